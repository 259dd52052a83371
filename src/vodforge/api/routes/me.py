"""``GET /v1/me``: the calling key (the dashboard checks a key with it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.keys import SCOPES

router = APIRouter(tags=["keys"])


@router.get(
    "/v1/me",
    summary="The calling API key",
    response_model=schemas.Me,
    responses={c: {"model": schemas.ErrorResponse} for c in (401, 403, 429)},
)
async def me(who: Annotated[Principal, Depends(require(*SCOPES))]) -> schemas.Me:
    return schemas.Me(key_id=who.key_id, name=who.name, scopes=list(who.scopes))
