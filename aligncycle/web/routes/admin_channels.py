"""Admin page for managers: the notification channels of teams and people (add, remove). A
channel's address is shown masked (``models.cadence.urls.mask_url``): its secret parts never
reach the page, the audit log or a message."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx
from aligncycle.web.pages import act, page, render
from aligncycle.web.routes.admin import require_admin
from models.cadence import channels
from models.cadence.tables import ChannelKind
from models.errors import InvalidInput
from models.services import people

router = APIRouter(include_in_schema=False)

KIND_LABELS = {
    ChannelKind.EMAIL: "Email",
    ChannelKind.SLACK: "Slack",
    ChannelKind.TEAMS: "Microsoft Teams",
    ChannelKind.WEBHOOK: "Webhook",
}
KIND_HINTS = {
    ChannelKind.EMAIL: "mailtos://user:password@mail.example.com?to=name@example.com",
    ChannelKind.SLACK: "https://hooks.slack.com/services/…",
    ChannelKind.TEAMS: "https://….logic.azure.com/workflows/…",
    ChannelKind.WEBHOOK: "jsons://hooks.example.com/aligncycle",
}


@page(router, "/admin/channels")
def channels_page(
    request: Request, ctx: Ctx, *, query=None, forms=None, status: int = 200
) -> Response:
    require_admin(ctx)
    teams = people.list_teams(ctx.session)
    everyone = people.list_people(ctx.session, active=True)
    team_names = {f"team:{t.key}": t.name for t in teams}
    person_names = {p.email: p.name for p in everyone}
    rows = []
    for ch in channels.list_channels(ctx.session):
        if ch.owner in team_names:
            owner = f"Team {team_names[ch.owner]}"
        else:
            owner = person_names.get(ch.owner, ch.owner)
        rows.append({"ch": ch, "owner": owner})
    return render(
        request,
        ctx,
        "admin_channels.html",
        status=status,
        rows=rows,
        teams=teams,
        everyone=everyone,
        kinds=KIND_LABELS,
        hints=KIND_HINTS,
        forms=forms or {},
        section="channels",
    )


@router.post("/admin/channels")
def channel_add_post(request: Request, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        require_admin(ctx, "configure notification channels")
        owner = data.get("owner", "")
        kind = data.get("kind", "")
        if kind not in {k.value for k in ChannelKind}:
            raise InvalidInput("choose what kind of channel it is", field="kind")
        where: dict[str, str] = {}
        if owner.startswith("team:"):
            where["team"] = owner.removeprefix("team:")
        elif owner.startswith("person:"):
            where["person"] = owner.removeprefix("person:")
        else:
            raise InvalidInput("choose the team or the person it is for", field="owner")
        url = data.get("url", "").strip()
        if not url:
            raise InvalidInput("paste the channel's address", field="url")
        try:
            out = channels.add_channel(
                ctx.session, ctx.me, kind=kind, url=url, label=data.get("label") or None, **where
            )
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=exc.field or "url") from None
        return f"{KIND_LABELS[out.kind]} channel added ({out.url})."

    return act(request, ctx, form_id="add", default_next="/admin/channels", run=run)


@router.post("/admin/channels/{channel_id}/remove")
def channel_remove_post(request: Request, channel_id: int, ctx: PageCtx) -> Response:
    def run(data: dict[str, str]) -> str:
        require_admin(ctx, "remove notification channels")
        out = channels.remove_channel(ctx.session, channel_id, ctx.me)
        kind = KIND_LABELS[out.kind]
        return f"{kind} channel removed; messages not yet sent through it are not sent."

    return act(
        request, ctx, form_id=f"remove-{channel_id}", default_next="/admin/channels", run=run
    )
