"""A reused scratch slot: outputs are removed between jobs, intermediates under ``_work`` are
emptied in place (same inode), and nothing is followed through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

from vodforge.pipeline.transcode import WORK, clear_files, empty_files


def test_clear_files_removes_outputs_and_empties_work_in_place(tmp_path: Path) -> None:
    (tmp_path / "hls" / "240p").mkdir(parents=True)
    (tmp_path / "hls" / "240p" / "seg_00000.m4s").write_bytes(b"segment")
    work = tmp_path / WORK
    work.mkdir()
    chunk = work / "c0000_240p.mp4"
    chunk.write_bytes(b"x" * 4096)
    inode = chunk.stat().st_ino
    (work / "stray").mkdir()
    (work / "stray" / "f").write_bytes(b"f")

    clear_files(tmp_path)

    assert not (tmp_path / "hls" / "240p" / "seg_00000.m4s").exists()
    assert (tmp_path / "hls" / "240p").is_dir()  # folders stay
    assert chunk.stat().st_size == 0
    assert chunk.stat().st_ino == inode  # the same file: no inode freed, none allocated next
    assert not (work / "stray").exists()


def test_empty_files_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep me")
    work = tmp_path / WORK
    work.mkdir()
    os.symlink(outside, work / "link.mp4")

    empty_files(work)

    assert not (work / "link.mp4").exists()
    assert outside.read_bytes() == b"keep me"


def test_empty_files_creates_a_missing_folder(tmp_path: Path) -> None:
    empty_files(tmp_path / WORK)
    assert (tmp_path / WORK).is_dir()
