"""Where a dataset's files come from: members of a zip as distributed (also a zip stored inside a zip, as COCO's
panoptic PNGs are) or files of an extracted folder, addressed by the same relative names.

Every reader goes through these, so every failure reads the same: a `DatasetError` whose message starts with
`<zip>:<member>` (or `<outer zip>:<inner zip>:<member>`, or the file's path) and says what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length
_LOCAL_SIGNATURE = b"PK\x03\x04"


class DatasetError(ValueError):
    """A dataset that cannot be found or an image that cannot be read; the message names the file or zip member."""


def join(*parts: str) -> str:
    """Joins member-name parts, skipping empty ones."""
    return "/".join(p for p in parts if p)


def _check_member(member: str, where: str) -> None:
    # Names can come from annotation files (COCO's file_name): none may leave the dataset's folder.
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or "\\" in member:
        raise DatasetError(f"{where}: {member!r} is not a relative path inside the dataset")


class _Slice(io.RawIOBase):
    """A read-only window [start, start + size) of a file: a zip member stored without compression, opened as a
    file of its own so that a zip inside a zip is read in place, without loading it into memory."""

    def __init__(self, path: Path, start: int, size: int):
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 (closed with the slice)
        self._start, self._size, self._position = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._position))
        self._file.seek(self._start + self._position)
        n = self._file.readinto(memoryview(buffer)[:n])
        self._position += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_inner(outer: zipfile.ZipFile, path: Path, inner: str) -> zipfile.ZipFile:
    info = outer.getinfo(inner)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if signature != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"bad local header for {inner}")
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        return zipfile.ZipFile(io.BufferedReader(_Slice(path, start, info.file_size), 1 << 16))
    return zipfile.ZipFile(io.BytesIO(outer.read(inner)))  # compressed: it has to be inflated anyway


class ZipSource:
    """Members of a zip file, or of the zip stored as member `inner` of it. The archive is opened lazily and again
    in every process: DataLoader workers are forked, and a forked handle would share its file offset with the
    parent's. Pickles as its path."""

    def __init__(self, path: str | os.PathLike, inner: str | None = None):
        self.path, self.inner = Path(path), inner
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"path": self.path, "inner": self.inner}

    def __setstate__(self, state):
        self.__init__(state["path"], state["inner"])

    @property
    def name(self) -> str:
        """The archive as messages name it."""
        return f"{self.path}:{self.inner}" if self.inner else str(self.path)

    def _open(self) -> zipfile.ZipFile:
        with self._lock:
            if self._zip is None or self._pid != os.getpid():
                try:
                    archive = zipfile.ZipFile(self.path)
                    if self.inner is not None:
                        archive = _open_inner(archive, self.path, self.inner)
                except KeyError:
                    raise DatasetError(f"{self.name}: missing") from None
                except (OSError, zipfile.BadZipFile, struct.error) as e:
                    raise DatasetError(f"{self.name}: cannot open zip ({e})") from None
                self._zip, self._pid = archive, os.getpid()
            return self._zip

    def names(self) -> list[str]:
        """Every member name (directory entries included)."""
        return self._open().namelist()

    def files(self, folder: str, recursive: bool = False) -> dict[str, str]:
        """{path relative to `folder`: member} of the files inside `folder` (directly, or at any depth)."""
        prefix = folder + "/" if folder else ""
        found = {}
        for name in self.names():
            if name.startswith(prefix) and not name.endswith("/"):
                relative = name[len(prefix):]
                if recursive or "/" not in relative:
                    found[relative] = name
        return found

    def has(self, member: str) -> bool:
        try:
            self._open().getinfo(member)
            return True
        except KeyError:
            return False

    def read(self, member: str) -> bytes:
        """The member's bytes; DatasetError naming it when missing or unreadable."""
        _check_member(member, self.name)
        try:
            return self._open().read(member)
        except KeyError:
            raise DatasetError(f"{self.where(member)}: missing") from None
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise DatasetError(f"{self.where(member)}: cannot read ({e})") from None

    def where(self, member: str) -> str:
        return f"{self.name}:{member}"


class FolderSource:
    """Files of an extracted layout under `path`, addressed by the same relative names as zip members."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def files(self, folder: str, recursive: bool = False) -> dict[str, str]:
        """{path relative to `folder`: member} of the files inside `folder` (directly, or at any depth)."""
        top = self.path / folder
        if not top.is_dir():
            return {}
        if not recursive:
            return {entry.name: join(folder, entry.name) for entry in os.scandir(top) if entry.is_file()}
        found = {}
        for directory, subfolders, names in os.walk(top):
            subfolders.sort()
            relative = Path(directory).relative_to(top).as_posix()
            for name in names:
                key = name if relative == "." else f"{relative}/{name}"
                found[key] = join(folder, key)
        return found

    def has(self, member: str) -> bool:
        return (self.path / member).is_file()

    def read(self, member: str) -> bytes:
        """The file's bytes; DatasetError naming it when missing or unreadable."""
        _check_member(member, str(self.path))
        try:
            return (self.path / member).read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"{self.where(member)}: missing") from None
        except OSError as e:
            raise DatasetError(f"{self.where(member)}: cannot read ({e})") from None

    def where(self, member: str) -> str:
        return str(self.path / member)


Source = ZipSource | FolderSource


def decode_image(source: Source, member: str) -> Image.Image:
    """The image file decoded (pixels loaded) in its stored mode; DatasetError naming it when it cannot be."""
    data = source.read(member)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except UnidentifiedImageError:  # its message names the in-memory buffer by address: say what it means
        raise DatasetError(f"{source.where(member)}: cannot decode image (not an image format PIL can read)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{source.where(member)}: cannot decode image ({e})") from None


def read_json(source: Source, member: str):
    """The parsed JSON file; DatasetError naming it when missing or malformed."""
    data = source.read(member)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{source.where(member)}: not a readable JSON file ({e})") from None
