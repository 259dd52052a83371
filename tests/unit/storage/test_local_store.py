"""LocalStore: atomic writes, sha256 etags, sidecar repair, root containment, events."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

import vodforge.storage.local as local_module
from vodforge.errors import InputError, InvalidKey, ObjectNotFound, OutOfDisk, StorageError
from vodforge.storage import (
    LocalStore,
    ObjectCreated,
    ObjectStore,
    ObjectTooLarge,
    SupportsMoveIn,
)

SECRET = b"s" * 32


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> LocalStore:
    return LocalStore(tmp_path / "store", secret=SECRET, clock=clock)


def leftovers(root: Path) -> list[str]:
    """Every temp file anywhere under root (including .meta)."""
    return sorted(p.name for p in root.rglob("*") if ".tmp-" in p.name)


class FailingStream(io.RawIOBase):
    """Yields ``good`` bytes, then fails the way a dropped client connection does."""

    def __init__(self, good: bytes) -> None:
        self._good = good
        self._sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._sent:
            self._sent = True
            return self._good
        raise RuntimeError("client went away")


def test_is_an_object_store_with_move_in(store: LocalStore) -> None:
    assert isinstance(store, ObjectStore)
    assert isinstance(store, SupportsMoveIn)
    assert store.bucket == "local"


def test_roundtrip(store: LocalStore, tmp_path: Path) -> None:
    data = b"hello world" * 1000
    info = store.put_bytes("uploads/a b/clip.mp4", data)
    assert info.key == "uploads/a b/clip.mp4"
    assert info.size == len(data)
    assert info.etag == hashlib.sha256(data).hexdigest()
    assert info.content_type == "video/mp4"
    assert info.last_modified.tzinfo is UTC

    assert store.stat("uploads//a b/./clip.mp4") == info
    assert store.exists("uploads/a b/clip.mp4")
    assert not store.exists("uploads/a b/other.mp4")
    assert store.get_bytes("uploads/a b/clip.mp4") == data
    with store.open_stream("uploads/a b/clip.mp4") as stream:
        assert stream.read() == data

    dest = tmp_path / "out" / "copy.mp4"
    assert store.get_file("uploads/a b/clip.mp4", dest) == info
    assert dest.read_bytes() == data
    assert leftovers(dest.parent) == []

    assert [i.key for i in store.list()] == ["uploads/a b/clip.mp4"]
    store.delete("uploads/a b/clip.mp4")
    store.delete("uploads/a b/clip.mp4")  # idempotent
    assert not store.exists("uploads/a b/clip.mp4")
    assert list(store.list()) == []
    # Emptied directories go too, as they would on S3 (which has none).
    assert sorted(p.name for p in store.root.iterdir()) == [".meta"]


def test_every_put_has_a_sha256_etag(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # several chunks
    expected = hashlib.sha256(data).hexdigest()
    source = tmp_path / "src.bin"
    source.write_bytes(data)
    assert store.put_file("f", source).etag == expected
    assert store.put_bytes("b", data).etag == expected
    assert store.put_stream("s", io.BytesIO(data)).etag == expected
    assert {i.etag for i in store.list()} == {expected}


def test_content_type_explicit_or_guessed(store: LocalStore) -> None:
    assert store.put_bytes("x.bin", b"1", content_type="application/x-thing").content_type == (
        "application/x-thing"
    )
    assert store.stat("x.bin").content_type == "application/x-thing"
    assert store.put_bytes("p/master.m3u8", b"#EXTM3U").content_type == (
        "application/vnd.apple.mpegurl"
    )
    assert store.put_bytes("noext", b"1").content_type is None


def test_failing_stream_leaves_no_object_and_no_temp_file(store: LocalStore) -> None:
    with pytest.raises(RuntimeError, match="client went away"):
        store.put_stream("uploads/x.mp4", FailingStream(b"partial"))  # type: ignore[arg-type]
    assert not store.exists("uploads/x.mp4")
    assert leftovers(store.root) == []


def test_failed_overwrite_keeps_the_old_object(store: LocalStore) -> None:
    store.put_bytes("k", b"old")
    with pytest.raises(RuntimeError):
        store.put_stream("k", FailingStream(b"new"))  # type: ignore[arg-type]
    assert store.get_bytes("k") == b"old"
    assert leftovers(store.root) == []


def test_max_bytes(store: LocalStore) -> None:
    store.put_stream("fits", io.BytesIO(b"x" * 10), max_bytes=10)
    with pytest.raises(ObjectTooLarge, match="larger than 9 bytes") as caught:
        store.put_stream("big", io.BytesIO(b"x" * 10), max_bytes=9)
    assert isinstance(caught.value, InputError)
    assert caught.value.label == "input_too_large"
    assert not store.exists("big")
    assert leftovers(store.root) == []
    assert [i.key for i in store.list()] == ["fits"]


def test_out_of_disk_is_transient_and_cleans_up(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutOfDisk) as caught:
        store.put_bytes("k", b"data")
    assert not caught.value.permanent
    monkeypatch.undo()
    assert not store.exists("k")
    assert leftovers(store.root) == []


def test_listeners_hear_every_put(store: LocalStore, clock: FakeClock, tmp_path: Path) -> None:
    heard: list[ObjectCreated] = []
    store.subscribe(heard.append)
    info = store.put_bytes("uploads/a.mp4", b"abc")
    (tmp_path / "f").write_bytes(b"defg")
    store.put_file("uploads/b.mp4", tmp_path / "f")
    store.put_stream("uploads/c.mp4", io.BytesIO(b"h"))
    assert heard[0] == ObjectCreated(
        bucket="local",
        key="uploads/a.mp4",
        size=3,
        etag=info.etag,
        event_time=datetime.fromtimestamp(clock.now, UTC),
        event_name="ObjectCreated:Put",
        source="vodforge:local",
    )
    assert [e.key for e in heard] == ["uploads/a.mp4", "uploads/b.mp4", "uploads/c.mp4"]


def test_failed_put_emits_nothing_and_listener_errors_reach_the_caller(store: LocalStore) -> None:
    heard: list[ObjectCreated] = []
    store.subscribe(heard.append)
    with pytest.raises(ObjectTooLarge):
        store.put_stream("big", io.BytesIO(b"xx"), max_bytes=1)
    assert heard == []

    def broken(event: ObjectCreated) -> None:
        raise ValueError("listener broke")

    store.subscribe(broken)
    with pytest.raises(ValueError, match="listener broke"):
        store.put_bytes("k", b"1")
    assert store.exists("k")  # stored; a retried put re-emits the same etag
    assert [e.key for e in heard] == ["k"]


def test_list_is_sorted_by_key_and_hides_internals(store: LocalStore) -> None:
    for key in ["b/2", "a-b", "a/b", "a/a", "c", "uploads2/x", "uploads/x", ".dotfile"]:
        store.put_bytes(key, key.encode())
    (store.root / "a" / ".x.tmp-abc").write_bytes(b"half written")
    keys = [i.key for i in store.list()]
    # Code point order, which is S3's UTF-8 byte order ('-' < '/').
    assert keys == [".dotfile", "a-b", "a/a", "a/b", "b/2", "c", "uploads/x", "uploads2/x"]
    assert [i.key for i in store.list("uploads/")] == ["uploads/x"]
    assert [i.key for i in store.list("uploads")] == ["uploads/x", "uploads2/x"]
    assert [i.key for i in store.list("a/")] == ["a/a", "a/b"]
    assert [i.key for i in store.list("a")] == ["a-b", "a/a", "a/b"]
    assert list(store.list("nothing/")) == []


def test_delete_prefix(store: LocalStore) -> None:
    for key in ["jobs/1/a", "jobs/1/sub/b", "jobs/10/c", "jobs/2/d"]:
        store.put_bytes(key, b"x")
    assert store.delete_prefix("jobs/1/") == 2
    assert [i.key for i in store.list()] == ["jobs/10/c", "jobs/2/d"]
    assert store.delete_prefix("jobs/1/") == 0
    assert not (store.root / "jobs" / "1").exists()


def test_missing_objects(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes("dir/file", b"x")
    for key in ["nope", "dir", "dir/file/deeper"]:
        with pytest.raises(ObjectNotFound):
            store.stat(key)
        with pytest.raises(ObjectNotFound):
            store.get_bytes(key)
        with pytest.raises(ObjectNotFound), store.open_stream(key):
            pass
        with pytest.raises(ObjectNotFound):
            store.get_file(key, tmp_path / "dest")
        with pytest.raises(ObjectNotFound):
            store.local_path(key)
        assert not store.exists(key)
    assert not (tmp_path / "dest").exists()
    store.delete("dir")  # a prefix, not an object: nothing happens
    assert store.exists("dir/file")


def test_key_conflicting_with_a_directory_is_a_storage_error(store: LocalStore) -> None:
    store.put_bytes("a/b", b"x")
    with pytest.raises(StorageError, match="local store put 'a'"):
        store.put_bytes("a", b"y")
    with pytest.raises(StorageError):
        store.put_bytes("a/b/c", b"y")
    assert leftovers(store.root) == []


def test_stat_repairs_missing_or_stale_sidecar(store: LocalStore) -> None:
    info = store.put_bytes("v/clip.mp4", b"first")
    sidecar = store.root / ".meta" / "v" / "clip.mp4.json"
    assert sidecar.exists()
    sidecar.unlink()
    assert store.stat("v/clip.mp4").etag == info.etag
    assert sidecar.exists()

    # Someone rewrites the file behind the store's back: the etag follows the content.
    (store.root / "v" / "clip.mp4").write_bytes(b"second version")
    assert store.stat("v/clip.mp4").etag == hashlib.sha256(b"second version").hexdigest()

    sidecar.write_text("{not json")
    assert store.stat("v/clip.mp4").etag == hashlib.sha256(b"second version").hexdigest()


def test_get_file_hardlinks_and_replaces_atomically(store: LocalStore, tmp_path: Path) -> None:
    store.put_bytes("k", b"new content")
    dest = tmp_path / "work" / "in.mp4"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    store.get_file("k", dest)
    assert dest.read_bytes() == b"new content"
    assert dest.stat().st_ino == (store.root / "k").stat().st_ino
    # A later put makes a new file; the earlier download keeps its bytes.
    store.put_bytes("k", b"newer")
    assert dest.read_bytes() == b"new content"
    assert leftovers(tmp_path / "work") == []


def test_get_file_copies_when_it_cannot_link(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("k", b"content")

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    dest = tmp_path / "copy"
    assert store.get_file("k", dest).size == 7
    assert dest.read_bytes() == b"content"
    assert dest.stat().st_ino != (store.root / "k").stat().st_ino


def test_local_path_is_the_real_file(store: LocalStore) -> None:
    store.put_bytes("in/clip.mp4", b"x")
    path = store.local_path("in/clip.mp4")
    assert path == store.root / "in" / "clip.mp4"
    assert path is not None
    assert path.read_bytes() == b"x"
    assert store.relative_key("in//clip.mp4") == "in/clip.mp4"
    assert store.relative_key("../x") is None


def test_move_in_renames_without_copy(store: LocalStore, tmp_path: Path) -> None:
    heard: list[ObjectCreated] = []
    store.subscribe(heard.append)
    source = tmp_path / "incoming.mp4"
    source.write_bytes(b"moved bytes")
    inode = source.stat().st_ino
    info = store.move_in("uploads/incoming.mp4", source)
    assert not source.exists()
    assert (store.root / "uploads" / "incoming.mp4").stat().st_ino == inode
    assert info.etag == hashlib.sha256(b"moved bytes").hexdigest()
    assert store.stat("uploads/incoming.mp4") == info
    assert [e.key for e in heard] == ["uploads/incoming.mp4"]


def test_move_in_refuses_symlinks_and_missing_files(store: LocalStore, tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(InputError, match="cannot read"):
        store.move_in("k", link)
    with pytest.raises(InputError, match="cannot read"):
        store.move_in("k", tmp_path / "missing")
    with pytest.raises(InputError, match="cannot read"):
        store.put_file("k", tmp_path / "missing")
    assert link.is_symlink()
    assert not store.exists("k")


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/etc/passwd", ".meta/x", "a/.x.tmp-1"])
def test_keys_outside_or_reserved_are_refused(store: LocalStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        store.stat(key)
    with pytest.raises(InvalidKey):
        store.delete(key)


def test_symlink_planted_inside_root_cannot_escape(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    (store.root / "evil").symlink_to(outside, target_is_directory=True)
    (store.root / "evil-file").symlink_to(outside / "passwd")
    store.put_bytes("fine", b"ok")

    for key in ["evil/passwd", "evil-file"]:
        with pytest.raises(InvalidKey, match="outside the store root"):
            store.get_bytes(key)
        with pytest.raises(InvalidKey):
            store.put_bytes(key, b"overwrite")
        with pytest.raises(InvalidKey):
            store.local_path(key)
    with pytest.raises(InvalidKey):
        store.put_bytes("evil/new", b"x")
    assert [i.key for i in store.list()] == ["fine"]
    assert store.delete_prefix("") == 1
    assert (outside / "passwd").read_bytes() == b"root:x:0:0"
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"]


def test_move_in_many_moves_every_file_and_syncs_each_directory_once(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = local_module._fsync_dir

    def record(directory: Path) -> None:
        synced.append(directory)
        real(directory)

    monkeypatch.setattr(local_module, "_fsync_dir", record)
    files = []
    for name in ("hls/a/init.mp4", "hls/a/seg_00000.m4s", "hls/a/seg_00001.m4s", "mp4/a.mp4"):
        path = tmp_path / "out" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        files.append((f"outputs/j/{name}", path))
    infos = store.move_in_many(files)
    assert [i.key for i in infos] == [key for key, _ in files]
    for (key, path), info in zip(files, infos, strict=True):
        assert not path.exists()
        assert info.etag == hashlib.sha256(key.removeprefix("outputs/j/").encode()).hexdigest()
        assert store.get_bytes(key) == key.removeprefix("outputs/j/").encode()
    assert sorted(synced) == sorted({store.root / "outputs/j/hls/a", store.root / "outputs/j/mp4"})


def test_concurrent_fsyncs_run_every_item_once_in_a_few_streams() -> None:
    """Publishing's fsyncs: every item once, on at most ``SYNC_STREAMS`` threads (the caller's
    among them); a failure stops its own stream only and surfaces once the others are done."""
    seen: list[int] = []
    threads: set[int] = set()
    lock = threading.Lock()

    def fsync(item: int) -> None:
        with lock:
            seen.append(item)
            threads.add(threading.get_ident())
        if item == 3:
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        local_module._concurrently(fsync, list(range(21)))
    failed_stream = set(range(3, 21, local_module.SYNC_STREAMS))
    assert sorted(seen) == sorted(set(range(21)) - failed_stream | {3})
    assert threading.get_ident() in threads
    assert len(threads) <= local_module.SYNC_STREAMS
