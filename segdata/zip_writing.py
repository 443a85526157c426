"""Writing zips the way `zip -r` does (directory entries, fixed timestamps so the same data gives the same
bytes): shared by the ADE20K writer and the synthetic COCO and Cityscapes builders."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

_DATE = (2016, 1, 1, 0, 0, 0)


def add_member(archive: zipfile.ZipFile, name: str, data: bytes | None = None) -> None:
    """Adds a file, or a directory entry when `data` is None (`zip -r` writes those too)."""
    info = zipfile.ZipInfo(name, date_time=_DATE)
    info.compress_type = archive.compression
    if data is None:
        info.external_attr = 0o40755 << 16 | 0x10
        data = b""
    else:
        info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def add_folders(archive: zipfile.ZipFile, path: str) -> None:
    """Directory entries for `path` and each folder above it ("a/b/" adds "a/" and "a/b/"), once each."""
    parts = path.strip("/").split("/")
    existing = set(archive.namelist())
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth]) + "/"
        if name not in existing:
            add_member(archive, name)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """The image file's bytes in `fmt` ("PNG", "JPEG")."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
