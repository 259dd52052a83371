"""Request bodies to files, streamed: a multipart upload's file part or a raw PUT body is
written to a temp file as it arrives (never held in memory) and cut off with 413 once it
passes the limit, before the rest is read."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from vodforge.api.problems import HttpProblem

__all__ = ["Received", "receive_body", "receive_multipart"]

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Received:
    """The uploaded file (a temp path the caller owns) and the form's text fields."""

    path: Path | None = None
    filename: str | None = None
    content_type: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass
class _Part:
    """The multipart part being parsed."""

    name: str | None = None
    header: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    value: bytes = b""

    def reset(self) -> None:
        self.name, self.header, self.headers, self.value = None, b"", {}, b""


def _too_large(limit: int) -> HttpProblem:
    return HttpProblem(413, f"upload is larger than the limit of {limit} bytes")


def _temp(directory: Path) -> tuple[IO[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    return os.fdopen(fd, "wb"), Path(name)


async def receive_body(
    chunks: AsyncIterator[bytes], *, directory: Path, limit: int, exact: int | None = None
) -> Received:
    """A raw body into a temp file; ``exact``: it must be exactly this many bytes."""
    out, path = _temp(directory)
    received = Received(path=path)
    try:
        with out:
            async for chunk in chunks:
                received.size += len(chunk)
                if received.size > limit:
                    raise _too_large(limit)
                out.write(chunk)
        if exact is not None and received.size != exact:
            raise HttpProblem(403, f"body has {received.size} bytes; the URL grants {exact}")
    except BaseException:
        received.discard()
        raise
    return received


async def receive_multipart(
    content_type: str, chunks: AsyncIterator[bytes], *, directory: Path, limit: int
) -> Received:
    """The ``file`` part into a temp file, the other (small) parts as text fields."""
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise HttpProblem(415, "send the upload as multipart/form-data with a 'file' part")

    received = Received()
    part = _Part()
    out: list[IO[bytes]] = []

    def on_part_begin() -> None:
        part.reset()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        name = part.header.lower()
        part.headers[name] = part.headers.get(name, b"") + data[start:end]

    def on_header_end() -> None:
        part.header = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if part.name == "file":
            if received.path is not None:
                raise HttpProblem(400, "send one 'file' part, not several")
            handle, path = _temp(directory)
            out.append(handle)
            received.path = path
            received.filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
            received.content_type = part.headers.get(b"content-type", b"").decode() or None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.name == "file":
            received.size += end - start
            if received.size > limit:
                raise _too_large(limit)
            out[-1].write(data[start:end])
        else:
            part.value += data[start:end]
            if len(part.value) > MAX_FIELD_BYTES:
                raise HttpProblem(413, f"form field {part.name!r} is too long")

    def on_part_end() -> None:
        if part.name == "file":
            out[-1].close()
        elif part.name:
            received.fields[part.name] = part.value.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except HttpProblem:
        for handle in out:
            handle.close()
        received.discard()
        raise
    except Exception as exc:
        for handle in out:
            handle.close()
        received.discard()
        raise HttpProblem(400, f"malformed multipart body: {exc}") from None
    if received.path is None:
        raise HttpProblem(422, "the form has no 'file' part", code="invalid_request")
    return received
