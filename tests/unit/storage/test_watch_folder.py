"""WatchFolder: a file moves into the store once it stops changing, exactly once."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from vodforge.storage import LocalStore, ObjectCreated, WatchFolder

SECRET = b"w" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store", secret=SECRET)


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    return tmp_path / "incoming"


@pytest.fixture
def watch(incoming: Path, store: LocalStore, clock: FakeClock) -> WatchFolder:
    return WatchFolder(incoming, store, settle_seconds=2.0, clock=clock)


def test_growing_file_waits_then_moves_once(
    watch: WatchFolder, store: LocalStore, incoming: Path, clock: FakeClock
) -> None:
    heard: list[ObjectCreated] = []
    store.subscribe(heard.append)
    upload = incoming / "show" / "ep 1.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"a" * 100)
    assert watch.poll_once() == []  # first sighting

    clock.now += 1.5
    with upload.open("ab") as out:
        out.write(b"b" * 100)  # still growing: the settle timer restarts
    assert watch.poll_once() == []
    clock.now += 1.9
    assert watch.poll_once() == []  # unchanged, but not for 2 s yet
    assert upload.exists()

    clock.now += 0.1
    events = watch.poll_once()
    assert [(e.key, e.size) for e in events] == [("uploads/show/ep 1.mp4", 200)]
    assert heard == events
    assert not upload.exists()
    assert store.get_bytes("uploads/show/ep 1.mp4") == b"a" * 100 + b"b" * 100

    clock.now += 10
    assert watch.poll_once() == []
    assert len(heard) == 1


def test_mtime_change_without_size_change_restarts_the_timer(
    watch: WatchFolder, incoming: Path, clock: FakeClock
) -> None:
    upload = incoming / "a.mov"
    upload.write_bytes(b"x")
    watch.poll_once()
    clock.now += 1.5
    stat = upload.stat()
    os.utime(upload, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert watch.poll_once() == []
    clock.now += 1.5
    assert watch.poll_once() == []
    clock.now += 0.5
    assert [e.key for e in watch.poll_once()] == ["uploads/a.mov"]


def test_partial_and_hidden_files_are_ignored(
    watch: WatchFolder, incoming: Path, clock: FakeClock
) -> None:
    incoming.mkdir(exist_ok=True)
    names = ["a.mp4.part", "b.mp4.PART", "c.tmp", "d.crdownload", ".e.mp4"]
    for name in names:
        (incoming / name).write_bytes(b"x")
    (incoming / ".hidden").mkdir()
    (incoming / ".hidden" / "f.mp4").write_bytes(b"x")
    (incoming / "real.mp4").write_bytes(b"x")
    watch.poll_once()
    clock.now += 5
    assert [e.key for e in watch.poll_once()] == ["uploads/real.mp4"]
    assert sorted(p.name for p in incoming.iterdir()) == sorted([*names, ".hidden"])


def test_symlinks_are_not_followed(
    watch: WatchFolder, incoming: Path, tmp_path: Path, clock: FakeClock
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"private")
    (incoming / "link.mp4").symlink_to(secret)
    watch.poll_once()
    clock.now += 5
    assert watch.poll_once() == []
    assert (incoming / "link.mp4").is_symlink()


def test_bad_file_is_logged_and_skipped_until_it_changes(
    watch: WatchFolder,
    incoming: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = incoming / "back\\slash.mp4"  # a name no key can carry
    bad.write_bytes(b"x")
    good = incoming / "good.mp4"
    good.write_bytes(b"y")
    watch.poll_once()
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="vodforge.storage.watch"):
        assert [e.key for e in watch.poll_once()] == ["uploads/good.mp4"]
        clock.now += 5
        assert watch.poll_once() == []
    warnings = [r.getMessage() for r in caplog.records if "back" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every poll
    assert "backslash" in warnings[0]
    assert bad.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(
    watch: WatchFolder, incoming: Path, clock: FakeClock, store: LocalStore
) -> None:
    locked = incoming / "locked.mp4"
    locked.write_bytes(b"x")
    locked.chmod(0)
    watch.poll_once()
    clock.now += 5
    assert watch.poll_once() == []
    assert locked.exists()
    assert not store.exists("uploads/locked.mp4")


def test_unreadable_file_stays_put_when_open_fails(
    watch: WatchFolder,
    incoming: Path,
    clock: FakeClock,
    store: LocalStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locked = incoming / "locked.mp4"
    locked.write_bytes(b"x")
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("locked.mp4"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", deny)
    watch.poll_once()
    clock.now += 5
    assert watch.poll_once() == []
    assert locked.exists()
    assert not store.exists("uploads/locked.mp4")


def test_run_stops_when_asked(watch: WatchFolder, incoming: Path, store: LocalStore) -> None:
    stop = threading.Event()
    stop.set()
    watch.run(stop, interval=0.01)  # returns at once
    assert list(store.list()) == []
