"""Atomic file writes: write under a temporary name in the same folder, then rename.

A process killed at any moment leaves either the old file or the complete new one, never a truncated file, which
is what lets an interrupted dump resume by looking at which files exist. A kill can leave a temporary file
(`.<name>.<random>.tmp`) behind; `remove_temporaries` clears them before a run resumes.
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

TEMPORARY_SUFFIX = ".tmp"


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only be read by setting it, which races with
    other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only way to read it
    os.umask(mask)
    return mask


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files a killed writer left in `folder` and below; returns them."""
    stale = [path for path in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600) and the rename would keep that: give it the mode any new file of
        # this process gets, so that a group can read a shared dump or checkpoint when the umask allows it.
        os.chmod(tmp, 0o666 & ~_umask())
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

