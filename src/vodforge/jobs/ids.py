"""Deterministic job ids: the same upload, preset and toolchain always map to the same job.

Object stores deliver events at least once, so a duplicate ObjectCreated event must land on the
job the first one created instead of starting a second transcode.
"""

from __future__ import annotations

import hashlib

from vodforge.errors import InvalidKey

__all__ = ["JOB_ID_LENGTH", "job_id_for"]

JOB_ID_LENGTH = 24


def job_id_for(bucket: str, key: str, etag: str, preset: str, toolchain_id: str) -> str:
    """24 hex chars of sha256 over the NUL-joined fields (NUL is refused inside a field)."""
    fields = {
        "bucket": bucket,
        "key": key,
        "etag": etag,
        "preset": preset,
        "toolchain_id": toolchain_id,
    }
    for name, value in fields.items():
        # A NUL inside a field would let two different tuples join to the same bytes.
        if "\0" in value:
            raise InvalidKey(f"job id field {name} contains a NUL character: {value!r}")
    joined = "\0".join(fields.values()).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()[:JOB_ID_LENGTH]
