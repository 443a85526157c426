"""segdata.sources: zip members (also a zip inside a zip, stored or deflated), extracted folders, and the errors
every reader reports through them."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import warnings
import zipfile

import pytest

from segdata.sources import DatasetError, FolderSource, ZipSource, decode_image, read_json
from segdata.zip_writing import add_folders, add_member

FILES = {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta", "top/sub/deeper/c.txt": b"gamma", "other.txt": b"x"}


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            if "/" in name:
                add_folders(archive, name.rsplit("/", 1)[0])
            add_member(archive, name, data)
    return buffer.getvalue()


@pytest.fixture
def sources(tmp_path):
    """The same files as a zip, as a zip stored inside a zip, as a deflated zip inside a zip, and as a folder."""
    (tmp_path / "plain.zip").write_bytes(zip_bytes(FILES))
    inner = zip_bytes(FILES)
    (tmp_path / "stored.zip").write_bytes(zip_bytes({"readme": b"r", "nested/inner.zip": inner}, zipfile.ZIP_STORED))
    (tmp_path / "deflated.zip").write_bytes(zip_bytes({"nested/inner.zip": inner}, zipfile.ZIP_DEFLATED))
    for name, kind in (("stored.zip", zipfile.ZIP_STORED), ("deflated.zip", zipfile.ZIP_DEFLATED)):
        assert zipfile.ZipFile(tmp_path / name).getinfo("nested/inner.zip").compress_type == kind  # both paths
    for name, data in FILES.items():
        (tmp_path / "folder" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / name).write_bytes(data)
    return {"zip": ZipSource(tmp_path / "plain.zip"),
            "stored": ZipSource(tmp_path / "stored.zip", inner="nested/inner.zip"),
            "deflated": ZipSource(tmp_path / "deflated.zip", inner="nested/inner.zip"),
            "folder": FolderSource(tmp_path / "folder")}


@pytest.mark.parametrize("kind", ["zip", "stored", "deflated", "folder"])
def test_listing_and_reading_agree_across_sources(sources, kind):
    source = sources[kind]
    assert source.files("top") == {"a.txt": "top/a.txt"}
    assert source.files("top", recursive=True) == {"a.txt": "top/a.txt", "sub/b.txt": "top/sub/b.txt",
                                                   "sub/deeper/c.txt": "top/sub/deeper/c.txt"}
    assert source.files("missing") == {}
    for name, data in FILES.items():
        assert source.read(name) == data and source.has(name)
    assert not source.has("top/none.txt")
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read("top/sub/b.txt") == b"beta"


def test_messages_name_the_member(sources, tmp_path):
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'plain.zip'}:top/none.txt: missing$"):
        sources["zip"].read("top/none.txt")
    nested = f"{tmp_path / 'stored.zip'}:nested/inner.zip:top/none.txt: missing$"
    with pytest.raises(DatasetError, match=f"^{nested}"):
        sources["stored"].read("top/none.txt")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'folder' / 'top' / 'none.txt'}: missing$"):
        sources["folder"].read("top/none.txt")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'stored.zip'}:nested/none.zip: missing$"):
        ZipSource(tmp_path / "stored.zip", inner="nested/none.zip").files("top")
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'broken.zip'}: cannot open zip"):
        ZipSource(tmp_path / "broken.zip").files("")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'plain.zip'}:top/a.txt: cannot decode image"):
        decode_image(sources["zip"], "top/a.txt")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'plain.zip'}:top/a.txt: not a readable JSON file"):
        read_json(sources["zip"], "top/a.txt")


@pytest.mark.parametrize("kind", ["zip", "folder"])
@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "top/../../outside.txt", "top\\..\\x"])
def test_names_cannot_leave_the_dataset(sources, tmp_path, kind, name):
    (tmp_path / "outside.txt").write_bytes(b"secret")
    with pytest.raises(DatasetError, match="is not a relative path inside the dataset"):
        sources[kind].read(name)


_INHERITED: ZipSource | None = None


def read_inherited(member: str) -> bytes:
    return _INHERITED.read(member)


def test_nested_zip_reads_in_forked_workers(sources):
    global _INHERITED
    source = sources["stored"]
    assert source.read("top/a.txt") == b"alpha"  # the parent's handles are open now
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    _INHERITED = source
    members = [name for name in FILES] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(read_inherited, members) == [FILES[m] for m in members]
