"""Opens what `--data` points at: ADE20K (zips or extracted) or a plain folder of images."""

from __future__ import annotations

from pathlib import Path

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
