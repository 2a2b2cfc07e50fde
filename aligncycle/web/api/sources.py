"""The sources of the shared numbers (one per system exported from): the currency of each
source's amounts, listed and said as on the import page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from aligncycle.web.auth import ApiCtx
from models.funnel import currency, jobs

router = APIRouter()
SourceName = Annotated[str, Path(min_length=1, max_length=64, description="The source's name.")]


class SourceCurrencyRead(BaseModel):
    source: str
    currency: str | None = Field(description="Its amounts' currency (a code); None: not known.")
    said_by: str | None = Field(
        description="Who said it on the import page or through the API; None: an import's "
        "amounts or mapping said it."
    )
    said_at: datetime | None


class CurrencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    currency: str = Field(min_length=1, max_length=10, description="A code such as USD or EUR.")


@router.get("/sources/currencies", response_model=list[SourceCurrencyRead])
def list_currencies(ctx: ApiCtx) -> list[SourceCurrencyRead]:
    """Every source that holds amounts or has a currency, by name, with its currency: the
    numbers never add up amounts of sources in different currencies."""
    jobs.require_importer(ctx.me)
    return [SourceCurrencyRead(**vars(r)) for r in currency.listing(ctx.session)]


@router.put("/sources/{source}/currency", response_model=SourceCurrencyRead)
def set_currency(source: SourceName, body: CurrencyIn, ctx: ApiCtx) -> SourceCurrencyRead:
    """Say which currency a source's amounts are in, or correct the one an import recorded
    (leads and managers); its later imports must agree. Refused when the source holds no
    amount."""
    jobs.require_importer(ctx.me)
    currency.set_currency(ctx.session, source, body.currency, ctx.me)
    ctx.session.flush()
    row = next(r for r in currency.listing(ctx.session) if r.source == source)
    return SourceCurrencyRead(**vars(row))
