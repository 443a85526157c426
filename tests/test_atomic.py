"""Atomic writes (eomt.atomic): a failed write leaves the old file and no temporary file; identical content is
not rewritten."""

from __future__ import annotations

import os
import stat

import pytest

from eomt import atomic


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic.write_file(path, lambda tmp: tmp.write_bytes(b"step 1"))

    def half_written(tmp):
        tmp.write_bytes(b"step")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_file(path, half_written)
    assert path.read_bytes() == b"step 1"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_identical_bytes_are_not_rewritten(tmp_path):
    path = tmp_path / "sub" / "a.json"
    assert atomic.write_json(path, {"a": 1})
    stamp = path.stat().st_mtime_ns
    assert not atomic.write_json(path, {"a": 1})
    assert path.stat().st_mtime_ns == stamp
    assert atomic.write_json(path, {"a": 2})
    assert path.read_text() == '{"a": 2}\n'


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    # The temporary file is created private (0600); without a chmod that mode would survive the rename.
    old = os.umask(umask)
    try:
        atomic.write_bytes(tmp_path / "a.bin", b"x")
        atomic.write_file(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"y"))
    finally:
        os.umask(old)
    for name in ("a.bin", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / "panoptic" / "m").mkdir(parents=True)
    left = [tmp_path / ".manifest.json.k2j3.tmp", tmp_path / "panoptic" / "m" / ".val_0001.png.x8.tmp"]
    for path in left:
        path.write_bytes(b"")
    (tmp_path / "keep.tmp").write_bytes(b"not ours: no leading dot")
    assert sorted(atomic.remove_temporaries(tmp_path)) == sorted(left)
    assert not any(path.exists() for path in left) and (tmp_path / "keep.tmp").exists()
