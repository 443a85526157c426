"""Opens what `--data` points at: ADE20K (zips or extracted) or a plain folder of images."""

from __future__ import annotations

from pathlib import Path

from eomt.classes import ade20k_classes
from segdata.ade20k import ADE20K, DatasetError
from segdata.image_folder import ImageFolder, ImageFolderError


def open_dataset(root: str | Path, split: str, skip_constant: bool):
    """An ADE20K reader when the folder has an ADE20K layout, else an ImageFolder; a clear error otherwise."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"--data {root}: no such folder")
    try:
        return ADE20K(root, split=split, skip_constant=skip_constant)
    except DatasetError as ade_error:
        try:
            return ImageFolder(root)
        except ImageFolderError as folder_error:
            raise DatasetError(f"{ade_error}\n{folder_error}") from None


def has_ground_truth(dataset) -> bool:
    return isinstance(dataset, ADE20K)


def dataset_identity(dataset, root: str | Path, split: str, skip_constant: bool) -> dict:
    """What the manifest records of the data, and what a rerun must match to resume into the same folder."""
    if isinstance(dataset, ADE20K):
        return {"kind": "ade20k", "root": str(Path(root).resolve()), "split": split, "skip_constant": skip_constant,
                "has_ground_truth": True}
    return {"kind": "images", "root": str(Path(root).resolve()), "has_ground_truth": False}


def dataset_classes() -> list[dict]:
    return [{"id": c.id, "name": c.name, "isthing": c.isthing, "color": list(c.color)} for c in ade20k_classes()]


def model_classes(config) -> list[dict]:
    """The class list of a model's config, in the manifest's form (used when the data has no class table)."""
    stuff = set(config.stuff_classes)
    return [{"id": i, "name": name, "isthing": i not in stuff, "color": list(color)}
            for i, (name, color) in enumerate(zip(config.class_names, config.class_colors, strict=True))]
