"""Atomic file writes: write under a temporary name in the same folder, then rename.

A process killed at any moment leaves either the old file or the complete new one, never a truncated file, which
is what lets an interrupted dump resume by looking at which files exist.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """Writes `data` unless the file already holds exactly that (a rerun then leaves files and their times
    untouched). Returns whether the file was written."""
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_file(path, lambda tmp: tmp.write_bytes(data))
    return True


def write_file(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Atomically makes `path` with a writer that wants a file name (torch.save, safetensors): write(tmp) on a
    temporary name in the same folder, then a rename; on any error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> bool:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> bool:
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def write_png(path: str | os.PathLike, image) -> bool:
    """Saves a PIL image (or an HxW / HxWx3 uint8 array) as PNG. Level 1 compression: these files are written
    by the thousand and the gain of higher levels is small on label maps."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return write_bytes(path, buffer.getvalue())

