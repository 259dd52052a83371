"""Errors as JSON: ``{"error": {"code", "message"}}`` with a status from the one exception
tree; never a traceback. Validation errors keep FastAPI's 422 in the same shape."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vodforge.errors import (
    AccessError,
    ConfigError,
    Forbidden,
    InputError,
    InvalidTransition,
    JobNotFound,
    ObjectNotFound,
    RateLimited,
    TransientError,
    Unauthenticated,
    VodforgeError,
)
from vodforge.observability.logging import get_logger
from vodforge.storage import ObjectTooLarge, PresignDenied

log = get_logger(__name__)

STATUS: tuple[tuple[type[VodforgeError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (PresignDenied, 403),
    (RateLimited, 429),
    (AccessError, 403),
    (ObjectTooLarge, 413),
    (JobNotFound, 404),
    (ObjectNotFound, 404),
    (InvalidTransition, 409),
    (InputError, 400),
    (ConfigError, 400),
    (TransientError, 503),
)

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def status_for(exc: VodforgeError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    line = " ".join(message.split())[:1000]
    return JSONResponse({"error": {"code": code, "message": line}}, status, headers=headers)


class HttpProblem(Exception):
    """A plain HTTP answer a route gives (409, 413, …) that is no error of the pipeline."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")


def install(app: FastAPI) -> None:
    @app.exception_handler(VodforgeError)
    async def vodforge_error(request: Request, exc: VodforgeError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("request failed", path=request.url.path, error=exc.one_line())
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        code = _CODES.get(status, "error") if status != 400 else re.sub(r"\W", "_", exc.label)
        return error_response(status, code, exc.one_line(), headers)

    @app.exception_handler(HttpProblem)
    async def http_problem(request: Request, exc: HttpProblem) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(
            exc.status_code,
            _CODES.get(exc.status_code, "error"),
            str(exc.detail),
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(422, "invalid_request", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.warning("unexpected error", path=request.url.path, error=repr(exc))
        return error_response(500, "internal", "internal error; see the server log")
