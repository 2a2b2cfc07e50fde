"""The account: password and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import (
    PageCtx,
    start_session,
)
from aligncycle.web.deps import Ctx, status_of
from aligncycle.web.pages import (
    FieldErrors,
    FormState,
    act,
    form_values,
    page,
    render,
    to_int,
)
from models.errors import DomainError, InvalidInput
from models.services import (
    accounts,
)

router = APIRouter(include_in_schema=False)


@page(router, "/account")
def account_page(
    request: Request,
    ctx: Ctx,
    *,
    query=None,
    forms=None,
    status: int = 200,
    new_token: str | None = None,
) -> Response:
    return render(
        request,
        ctx,
        "account.html",
        status=status,
        tokens=accounts.list_tokens(ctx.session, ctx.me),
        new_token=new_token,
        forms=forms or {},
    )


@router.post("/account/password")
def password_post(request: Request, ctx: PageCtx) -> Response:
    from aligncycle.web.auth import client_address, login_throttle

    new_raw: dict[str, str] = {}
    throttle = login_throttle(request.app)  # a wrong current password counts like a sign-in's
    guess = {
        "secret": request.app.state.secret_key,
        "now": throttle.clock(),
        "client": client_address(request),
    }
    refused: list[DomainError] = []

    def run(data: dict[str, str]) -> str:
        if data.get("new_password", "") != data.get("repeat", ""):
            raise FieldErrors("the two new passwords differ", {"repeat": "does not match"})
        try:
            accounts.change_password(
                ctx.session,
                ctx.me,
                data.get("current", ""),
                data.get("new_password", ""),
                limit=throttle.limit,
                **guess,
            )
        except (accounts.AuthenticationFailed, accounts.TooManyAttempts) as exc:
            refused.append(exc)
            if isinstance(exc, accounts.TooManyAttempts):
                raise
            raise FieldErrors(
                "your current password is not right", {"current": "not right"}
            ) from None
        except InvalidInput as exc:
            raise FieldErrors(exc.message, {"new_password": exc.message}) from None
        raw, _ = accounts.create_session(ctx.session, ctx.me)
        new_raw["session"] = raw
        return "Password changed. Your other browsers are signed out."

    resp = act(request, ctx, form_id="password", default_next="/account", run=run)
    if "session" in new_raw and resp.status_code == 303:
        start_session(request, resp, new_raw["session"])
    for exc in refused:  # act rolled the form back; the wrong guess still counts
        if isinstance(exc, accounts.TooManyAttempts):
            resp.headers["retry-after"] = str(exc.retry_after)
        else:
            accounts.record_wrong_current_password(ctx.session, ctx.me, **guess)
    # never echo passwords back into the form
    return resp


@router.post("/account/tokens")
def token_post(request: Request, ctx: PageCtx) -> Response:
    data = form_values(ctx.form)
    try:
        days = to_int(data.get("days"))
        raw, _ = accounts.create_token(ctx.session, ctx.me, data.get("name", ""), days)
    except DomainError as exc:
        ctx.session.rollback()
        fields = {"name": exc.message} if "name" in exc.message else {"days": exc.message}
        state = FormState(values=data, error=exc.message, fields=fields)
        return account_page(request, ctx, forms={"token": state}, status=status_of(exc))
    return account_page(request, ctx, new_token=raw, status=201)


@router.post("/account/tokens/{token_id}/revoke")
def token_revoke_post(request: Request, token_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        row = accounts.revoke_token(ctx.session, ctx.me, token_id)
        return f"Token “{row.name}” revoked: it no longer works."

    return act(request, ctx, form_id=f"revoke-{token_id}", default_next="/account", run=run)
