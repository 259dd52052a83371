"""The public names of vodforge.storage are exactly ``__all__`` (as httpx checks its own)."""

from __future__ import annotations

from vodforge import storage


def test_all_is_the_public_surface() -> None:
    public = {name for name in dir(storage) if not name.startswith("_")}
    modules = {"base", "events", "factory", "keys", "local", "s3", "watch"}
    assert public - modules == set(storage.__all__)
    assert sorted(storage.__all__) == sorted(set(storage.__all__))
