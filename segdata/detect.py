"""Opens what `--data` points at: ADE20K, COCO or Cityscapes (zips or extracted), or a plain folder of images."""

from __future__ import annotations

from pathlib import Path

from segdata import ade20k, cityscapes, coco
from segdata.ade20k import ADE20K, DatasetError
from segdata.image_folder import ImageFolder, ImageFolderError

DATASETS = ("ade20k", "coco", "cityscapes")
_MODULES = {"ade20k": ade20k, "coco": coco, "cityscapes": cityscapes}


def detect(root: str | Path) -> list[str]:
    """The datasets whose files are in `root` (usually none or one)."""
    return [name for name in DATASETS if _MODULES[name].looks_like(Path(root))]


def open_dataset(root: str | Path, split: str, skip_constant: bool = False, dataset: str | None = None):
    """The reader of the dataset in `root`: `dataset` ("ade20k" | "coco" | "cityscapes") or the one its files show,
    else an ImageFolder of the photos in it. `split` is the dataset's own name or "validation"/"training".
    `skip_constant` (EoMT's official ADE20K validation set) applies to ADE20K only. Clear errors otherwise."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"--data {root}: no such folder")
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    found = [dataset] if dataset else detect(root)
    if len(found) > 1:
        raise DatasetError(f"{root}: holds files of {' and '.join(found)}; say which dataset to read")
    if skip_constant and found != ["ade20k"]:
        raise ValueError("skipping images with a constant annotation is EoMT's ADE20K validation; "
                         f"{root} is {found[0] if found else 'a folder of images'}")
    if found == ["ade20k"]:
        return ADE20K(root, split=split, skip_constant=skip_constant)
    if found == ["coco"]:
        return coco.COCO(root, split=split)
    if found == ["cityscapes"]:
        return cityscapes.Cityscapes(root, split=split)
    try:
        return ImageFolder(root)
    except ImageFolderError as folder_error:
        looked_for = "; ".join(f"{name}: {module.LOOKED_FOR}" for name, module in _MODULES.items())
        raise DatasetError(f"{root}: no dataset found. Looked for {looked_for}.\n{folder_error}") from None

