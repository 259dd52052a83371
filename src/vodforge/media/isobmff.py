"""Reading the few ISO-BMFF (MP4) boxes vodforge needs straight from bytes, without a demuxer.

Only the path to a video track's decoder configuration is walked: ``moov/trak/mdia/minf/stbl/
stsd`` → the sample entry (``avc1``/``avc3``) → ``avcC``. An fMP4 init segment is a few hundred
bytes, so this is microseconds where opening it with a demuxer is a millisecond.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["avcc_record", "iter_boxes"]

#: Containers on the way from ``moov`` to ``stsd``.
_PATH = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
#: H.264 sample entries carrying an ``avcC`` child.
_AVC_ENTRIES = frozenset({b"avc1", b"avc3"})
#: Bytes of a VisualSampleEntry's own fields before its child boxes (ISO/IEC 14496-12 12.1.3).
_VISUAL_SAMPLE_ENTRY_FIELDS = 78
#: ``stsd`` is a full box (version + flags) with an entry count before its entries.
_STSD_PREFIX = 8


def iter_boxes(
    data: bytes, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload_start, box_end)`` of each box in ``data[start:end]``; stops at the first
    box whose header or size does not fit (a truncated file yields what is whole)."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, box_type = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            return
        yield box_type, offset + header, offset + size
        offset += size


def avcc_record(data: bytes) -> bytes | None:
    """The ``avcC`` record (AVCDecoderConfigurationRecord) of the first H.264 track in an MP4
    or fMP4 init segment, or None if there is none."""
    return _find_avcc(data, 0, len(data), 0)


def _find_avcc(data: bytes, start: int, end: int, depth: int) -> bytes | None:
    want = _PATH[depth]
    for box_type, payload, box_end in iter_boxes(data, start, end):
        if box_type != want:
            continue
        if depth < len(_PATH) - 1:
            found = _find_avcc(data, payload, box_end, depth + 1)
        else:
            found = _avcc_in_stsd(data, payload + _STSD_PREFIX, box_end)
        if found is not None:
            return found
    return None


def _avcc_in_stsd(data: bytes, start: int, end: int) -> bytes | None:
    for entry_type, payload, entry_end in iter_boxes(data, start, end):
        if entry_type not in _AVC_ENTRIES:
            continue
        for child, child_payload, child_end in iter_boxes(
            data, payload + _VISUAL_SAMPLE_ENTRY_FIELDS, entry_end
        ):
            if child == b"avcC":
                return data[child_payload:child_end]
    return None
