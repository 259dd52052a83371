"""Job ids: deterministic, so a duplicate event lands on the job the first one created."""

from __future__ import annotations

import hashlib
import re

import pytest

from vodforge.errors import InvalidKey
from vodforge.jobs import job_id_for

FIELDS = ("media", "in/clip.mp4", "9b2cf535f27731c974343645a3985328", "default", "tc-abc")


def test_same_fields_same_id() -> None:
    assert job_id_for(*FIELDS) == job_id_for(*FIELDS)
    assert re.fullmatch(r"[0-9a-f]{24}", job_id_for(*FIELDS))


def test_id_is_sha256_of_the_nul_joined_fields() -> None:
    expected = hashlib.sha256("\0".join(FIELDS).encode()).hexdigest()[:24]
    assert job_id_for(*FIELDS) == expected


@pytest.mark.parametrize("index", range(len(FIELDS)))
def test_every_field_changes_the_id(index: int) -> None:
    changed = list(FIELDS)
    changed[index] += "x"
    assert job_id_for(*changed) != job_id_for(*FIELDS)


def test_field_boundaries_matter() -> None:
    assert job_id_for("ab", "c", "e", "p", "t") != job_id_for("a", "bc", "e", "p", "t")


def test_nul_inside_a_field_is_refused() -> None:
    with pytest.raises(InvalidKey, match="key contains a NUL"):
        job_id_for("media", "in/a\0b.mp4", "e", "p", "t")


def test_unicode_keys() -> None:
    assert job_id_for("media", "in/café 🎬.mp4", "e", "p", "t") != job_id_for(
        "media", "in/cafe 🎬.mp4", "e", "p", "t"
    )
