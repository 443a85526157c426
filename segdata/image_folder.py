"""A plain folder of photos, without annotations: the dump predicts them and writes no metrics."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from eomt.images import to_rgb_image
from segdata.sample import Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class ImageFolderError(ValueError):
    pass


class ImageFolder:
    """The image files directly inside `root`, in file-name order: the reader interface of segdata.sample
    without any ground truth."""

    name = "images"
    split = None
    classes = ()
    tasks = frozenset()
    has_ground_truth = False

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ImageFolderError(f"{self.root}: not a folder")
        self.paths = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise ImageFolderError(
                f"{self.root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files directly "
                "inside it) and no ADE20K layout")
        self.stems = [p.stem for p in self.paths]
        self.keys = [p.name for p in self.paths]

    @property
    def image_ids(self) -> list[int]:
        return list(range(len(self.paths)))

    def __len__(self) -> int:
        return len(self.paths)

    def read_image(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                return to_rgb_image(image)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise ImageFolderError(f"{path}: cannot decode image ({e})") from None

    def sample(self, index: int) -> Sample:
        """The image alone (a folder of photos has no ground truth)."""
        return Sample(self.stems[index], self.read_image(index))
