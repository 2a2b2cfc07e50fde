"""Personal access tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web.api.common import Id, Limit, Offset, Page, window
from aligncycle.web.auth import ApiCtx
from models.services import (
    accounts,
)

router = APIRouter()


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    days: int | None = Field(default=None, ge=1, le=3650, description="Default: no expiry.")


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown once: keep it somewhere safe.")


@router.get("/tokens", response_model=Page[TokenRead], tags=["account"])
def list_tokens(ctx: ApiCtx, limit: Limit = 50, offset: Offset = 0) -> dict:
    rows = [TokenRead.model_validate(t) for t in accounts.list_tokens(ctx.session, ctx.me)]
    return window(rows, limit, offset)


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["account"])
def create_token(body: TokenIn, ctx: ApiCtx) -> TokenCreated:
    raw, row = accounts.create_token(ctx.session, ctx.me, body.name, body.days)
    return TokenCreated(**TokenRead.model_validate(row).model_dump(), token=raw)


@router.delete("/tokens/{token_id}", response_model=TokenRead, tags=["account"])
def revoke_token(token_id: Id, ctx: ApiCtx) -> TokenRead:
    return TokenRead.model_validate(accounts.revoke_token(ctx.session, ctx.me, token_id))
