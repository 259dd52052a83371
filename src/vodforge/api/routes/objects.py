"""Signed object URLs of a LocalStore, served by the API (no key: the signature is the grant).

``GET /v1/objects/{key}`` downloads (Range supported), ``PUT /v1/objects/{key}`` completes a
presigned upload (exactly the granted length), ``GET /v1/signed/{exp}/{sig}/{folder}/~/{rest}``
serves a folder grant (HLS playlists and their segments).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from vodforge.api import schemas
from vodforge.api.context import ApiContext, api_context
from vodforge.api.problems import HttpProblem
from vodforge.api.receive import receive_body
from vodforge.api.routes.common import ingest_of
from vodforge.api.routes.uploads import store_upload
from vodforge.errors import Forbidden, ObjectNotFound
from vodforge.storage import guess_content_type, normalize_key

router = APIRouter(tags=["objects"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 403, 404, 411, 413)
}


def _local_only(ctx: ApiContext) -> None:
    if not ctx.urls.local:
        raise HttpProblem(404, "objects are served by S3 here: use the presigned S3 URLs")


def _file(ctx: ApiContext, key: str) -> FileResponse:
    path = ctx.store.local_path(key)
    if path is None:
        raise ObjectNotFound(f"no object {key!r}")
    return FileResponse(path, media_type=guess_content_type(key) or "application/octet-stream")


def _path_and_query(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.url.query
    return raw.decode("latin-1") + (f"?{query}" if query else "")


@router.get(
    "/v1/objects/{key:path}",
    summary="Download an object with a signed URL",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **_ERRORS},
)
async def get_object(
    key: str, request: Request, ctx: Annotated[ApiContext, Depends(api_context)]
) -> Response:
    _local_only(ctx)
    grant = ctx.urls.verify(_path_and_query(request), "get")
    return await run_in_threadpool(_file, ctx, grant.key)


@router.put(
    "/v1/objects/{key:path}",
    summary="Complete a presigned upload",
    status_code=201,
    responses=_ERRORS,
)
async def put_object(
    key: str, request: Request, ctx: Annotated[ApiContext, Depends(api_context)]
) -> JSONResponse:
    _local_only(ctx)
    grant = ctx.urls.verify(_path_and_query(request), "put")
    granted = grant.content_length if grant.content_length is not None else 0
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HttpProblem(411, "send the exact Content-Length the URL was signed for")
    if int(length) != granted:
        raise Forbidden(f"Content-Length {length} is not the {granted} bytes the URL grants")
    received = await receive_body(
        request.stream(), directory=ctx.settings.data_dir / "tmp", limit=granted, exact=granted
    )
    received.content_type = request.headers.get("content-type") or None
    try:
        job, _ = await run_in_threadpool(
            store_upload, ctx.store, ingest_of(request), grant.key, received
        )
    finally:
        received.discard()
    return JSONResponse(
        {"key": grant.key, "size": received.size, "job_id": job.id if job else None},
        status_code=201,
    )


@router.get(
    "/v1/signed/{exp}/{sig}/{path:path}",
    summary="Download under a signed folder grant (HLS)",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **_ERRORS},
)
async def get_signed(
    exp: int,
    sig: str,
    path: str,
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> Response:
    _local_only(ctx)
    folder, sep, rest = unquote(path).partition("/~/")
    if not sep or not rest:
        raise Forbidden("signed folder URL lacks its '/~/' separator")
    ctx.urls.verify_prefix(exp, sig, folder + "/")
    key = normalize_key(f"{folder}/{rest}")
    if not key.startswith(folder + "/"):
        raise Forbidden("signed folder URL points outside its folder")
    return await run_in_threadpool(_file, ctx, key)
