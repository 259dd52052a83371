"""``avcc_record`` reads the decoder configuration that PyAV's demuxer reports, from bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest

from tests.conftest import SampleFactory
from vodforge.media.isobmff import avcc_record, iter_boxes


def _extradata(path: Path) -> bytes:
    with av.open(str(path)) as container:
        return bytes(container.streams.video[0].codec_context.extradata or b"")


@pytest.mark.parametrize("name", ["basic", "rotated", "tenbit_422", "no_audio", "long_gop"])
def test_matches_the_demuxer(sample: SampleFactory, name: str) -> None:
    path = sample(name)
    record = avcc_record(path.read_bytes())
    assert record is not None
    assert record == _extradata(path)


@pytest.mark.parametrize("name", ["odd_size", "audio_only", "random_bytes", "empty"])
def test_none_without_an_h264_track(sample: SampleFactory, name: str) -> None:
    assert avcc_record(sample(name).read_bytes()) is None


def test_cut_files_never_crash(sample: SampleFactory) -> None:
    data = sample("basic").read_bytes()
    whole = avcc_record(data)
    for cut in range(0, len(data), max(1, len(data) // 97)):
        assert avcc_record(data[:cut]) in (None, whole)


def _box(kind: bytes, payload: bytes, *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_largesize_and_to_the_end_boxes() -> None:
    data = _box(b"ftyp", b"isom") + _box(b"free", b"x" * 5, large=True)
    data += struct.pack(">I4s", 0, b"mdat") + b"rest of file"
    boxes = [(kind, end - start) for kind, start, end in iter_boxes(data)]
    assert boxes == [(b"ftyp", 4), (b"free", 5), (b"mdat", 12)]


def test_box_claiming_more_than_there_is_stops_the_walk() -> None:
    data = _box(b"ftyp", b"isom") + struct.pack(">I4s", 1000, b"moov") + b"short"
    assert [kind for kind, _, _ in iter_boxes(data)] == [b"ftyp"]
