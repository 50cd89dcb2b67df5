"""The one atomic-write helper: a replaced file is old or new, never half, never litter."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from gancli.engine.errors import StorageError
from gancli.engine.files import atomic_write


def test_the_new_file_replaces_the_old_and_nothing_else_is_left(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not replaced before the write is complete
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "grid.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_storage_errors_are_one_line_with_the_hint(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    with pytest.raises(StorageError) as info, atomic_write(target, hint="; all is well") as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(info.value) == f"cannot write {target}: No space left on device; all is well"
    assert info.value.exit_code == 1 and not list(tmp_path.iterdir())


def test_a_file_in_place_of_the_folder_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("a file, not a folder")
    target = tmp_path / "runs" / "clusters" / "entry.pt"
    message = r"^cannot write .*entry\.pt: Not a directory$"
    with pytest.raises(StorageError, match=message), atomic_write(target) as tmp:
        tmp.write_bytes(b"x")


def test_keep_old_as_keeps_the_two_newest(tmp_path: Path) -> None:
    last, previous = tmp_path / "last.pt", tmp_path / "previous.pt"
    for content in (b"1", b"2", b"3"):
        with atomic_write(last, keep_old_as=previous) as tmp:
            tmp.write_bytes(content)
    assert (last.read_bytes(), previous.read_bytes()) == (b"3", b"2")
