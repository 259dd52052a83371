"""Keys: one normal form, and every way out of a store's root refused."""

from __future__ import annotations

import pytest

from vodforge.errors import InvalidKey
from vodforge.storage import (
    MAX_KEY_BYTES,
    guess_content_type,
    join_key,
    key_matches,
    normalize_key,
    normalize_prefix,
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a", "a"),
        ("uploads/clip.mp4", "uploads/clip.mp4"),
        ("a//b", "a/b"),
        ("a///b//c", "a/b/c"),
        ("./a/./b", "a/b"),
        ("a/b/", "a/b"),
        ("my clip (final).mp4", "my clip (final).mp4"),
        ("vidéo/日本語/клип.mov", "vidéo/日本語/клип.mov"),
        ("a+b%20c&d=e", "a+b%20c&d=e"),
        ("..a/b..", "..a/b.."),  # dots inside a name are not a parent segment
        (".hidden", ".hidden"),
        ("x" * MAX_KEY_BYTES, "x" * MAX_KEY_BYTES),
    ],
)
def test_normalize_accepts(key: str, expected: str) -> None:
    assert normalize_key(key) == expected


@pytest.mark.parametrize(
    ("key", "complaint"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("/", "absolute"),
        ("..", "'..'"),
        ("../x", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\rb", "U+000D"),
        ("a\tb", "U+0009"),
        ("a\x7fb", "U+007F"),
        ("a\\b", "backslash"),
        ("..\\x", "backslash"),
        ("a\ud800b", "surrogate"),
        (".", "names no object"),
        ("./", "names no object"),
        ("x" * (MAX_KEY_BYTES + 1), "longer than"),
        ("é" * (MAX_KEY_BYTES // 2 + 1), "longer than"),  # 2 bytes each in UTF-8
    ],
)
def test_normalize_rejects_with_one_line_reason(key: str, complaint: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        normalize_key(key)
    message = caught.value.message
    assert complaint in message
    assert "\n" not in caught.value.one_line()


def test_normalize_rejects_non_strings() -> None:
    with pytest.raises(InvalidKey, match="must be a string"):
        normalize_key(b"a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ""),
        ("./", ""),
        ("uploads/", "uploads/"),
        ("uploads", "uploads"),
        ("a//b/", "a/b/"),
    ],
)
def test_normalize_prefix_keeps_trailing_slash(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["/abs/", "../", "a/../", "a\x00/"])
def test_normalize_prefix_rejects(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        normalize_prefix(prefix)


def test_join_key() -> None:
    assert join_key("uploads/", "a.mp4") == "uploads/a.mp4"
    assert join_key("jobs", "", "j1", "/out/", "master.m3u8") == "jobs/j1/out/master.m3u8"
    with pytest.raises(InvalidKey):
        join_key("jobs", "..", "x")
    with pytest.raises(InvalidKey):
        join_key("/jobs", "x")
    with pytest.raises(InvalidKey):
        join_key()


@pytest.mark.parametrize(
    ("key", "prefix", "suffix", "matches"),
    [
        ("uploads/a.mp4", "uploads/", ".mp4", True),
        ("uploads/a.MP4", "uploads/", ".mp4", True),
        ("uploads/a.mp4", "uploads/", ".MOV", False),
        ("uploads2/a.mp4", "uploads/", ".mp4", False),
        ("Uploads/a.mp4", "uploads/", "", False),  # prefixes are exact
        ("anything", "", "", True),
    ],
)
def test_key_matches(key: str, prefix: str, suffix: str, matches: bool) -> None:
    assert key_matches(key, prefix, suffix) is matches


def test_content_types_do_not_depend_on_the_host() -> None:
    assert guess_content_type("a/master.m3u8") == "application/vnd.apple.mpegurl"
    assert guess_content_type("seg.TS") == "video/mp2t"
    assert guess_content_type("init.m4s") == "video/iso.segment"
    assert guess_content_type("noext") is None
