"""Atomic writes (metrics.atomic): a failed write leaves the old file and no temporary file; identical content is
not rewritten."""

from __future__ import annotations

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
