"""Playbooks in the browser: the loaded playbooks, a preview of one (its phases, questions,
settings and proposed action items, in words), checking a playbook file before it is loaded
(managers), and starting a cycle from a preview (point persons)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aligncycle.web.auth import PageCtx
from aligncycle.web.deps import Ctx, status_of
from aligncycle.web.pages import FormState, form_values, page, render
from aligncycle.web.routes.admin import require_admin
from models.enums import AnswerKind, Role, YesNo
from models.errors import DomainError, InvalidInput, NotFound
from models.funnel.kpis import KPIS
from models.playbook import PlaybookSpec, Question
from models.playbook_check import check_text
from models.services import people, playbooks
from models.tables import Playbook

router = APIRouter(include_in_schema=False)
#: The biggest playbook file checked.
MAX_PLAYBOOK_FILE = 512 * 1024
CADENCE_WORDS = {
    "daily": "every day",
    "weekly": "every week",
    "biweekly": "every two weeks",
    "monthly": "every month",
}


CATEGORY_WORDS = {
    "hand_off": "Hand-off",
    "lead_definition": "Lead definition",
    "content": "Content",
    "campaign": "Campaigns",
    "data_and_tools": "Data and tools",
    "cadence": "Cadence",
    "kpis": "Shared numbers (KPIs)",
    "other": "Other",
}


def _term(key: str) -> str:
    """A definition's key as a term: ``handoff_sla`` → "Handoff SLA", ``mql`` → "MQL"."""
    words = [w.upper() if len(w) <= 3 else w for w in key.replace("-", "_").split("_") if w]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _who(spec_owner: Any, team_names: dict[str, str]) -> str:
    if spec_owner is None:
        return "anyone on the cycle's teams"
    role = people.ROLE_WORDS[spec_owner.role]
    if spec_owner.team:
        return f"a {role} of {team_names.get(spec_owner.team, spec_owner.team)}"
    return f"a {role}" if role[0] not in "aeiou" else f"an {role}"


def _question(q: Question, team_names: dict[str, str]) -> dict[str, Any]:
    kind = "Yes or no" if q.answer is AnswerKind.YES_NO else "A written answer"
    gap = None
    if q.gap is not None:
        answer = (
            "yes" if q.gap.when is YesNo.YES else ("no" if q.gap.when is YesNo.NO else "not sure")
        )
        gap = (
            f"Answering “{answer}” raises the gap “{q.gap.title}” ({q.gap.severity.value} severity)"
        )
    return {
        "text": q.text,
        "help": q.help,
        "kind": kind,
        "required": q.required,
        "owner": _who(q.owner, team_names),
        "gap": gap,
    }


def preview(spec: PlaybookSpec, team_names: dict[str, str]) -> dict[str, Any]:
    """What the preview shows, in words."""
    from aligncycle.web.pages import PHASE_LABELS

    phases = []
    for phase in PHASE_LABELS:
        if phase.value == "closed":
            continue
        ps = spec.phase(phase)
        phases.append(
            {
                "name": PHASE_LABELS[phase],
                "description": ps.description,
                "questions": [_question(q, team_names) for q in ps.questions],
            }
        )
    st = spec.settings
    settings = [
        f"A cycle lasts {st.cycle_length_days} days.",
        f"Owners are asked how their action items are going {CADENCE_WORDS[st.cadence]}.",
        f"Leads are handed over within {st.handoff_sla_hours} hours.",
        "A manager signs off the recap."
        if st.manager_signoff_required
        else "The recap needs no manager sign-off.",
    ]
    if st.counterpart_signoff:
        settings.append("An action item with a counterpart counts as done once they sign it off.")
    if st.starts_every:
        settings.append(
            f"A new cycle of the same teams starts every {st.starts_every.replace('-', ' ')}, "
            "with its point persons and the open work of the previous cycle."
        )
    if st.rejection_drift_above is not None:
        settings.append(
            f"When sales sends back more than {st.rejection_drift_above:.0%} of the leads it "
            "reviews, the gap analysis proposes a lead definition gap with the reasons."
        )
    if st.escalate_late_leads_after_hours is not None:
        settings.append(
            f"A lead still waiting {st.escalate_late_leads_after_hours} hours past the hand-off "
            "time goes to the teams' managers."
        )
    templates = [
        {
            "category": CATEGORY_WORDS.get(category.value, category.value.replace("_", " ")),
            "lines": [
                f"{t.title} — {_who(t.owner, team_names)}, due {t.due_in_days} days after "
                "it is proposed"
                for t in items
            ],
        }
        for category, items in spec.action_templates.items()
    ]
    return {
        "title": spec.title,
        "description": spec.description,
        "teams": [team_names.get(t, t) for t in spec.teams],
        "phases": phases,
        "settings": settings,
        "kpis": [KPIS[k].title for k in spec.kpis if k in KPIS],
        "definitions": {_term(k): v for k, v in spec.definitions.items()},
        "templates": templates,
        "count": len(spec.questions()),
    }


def _team_names(ctx: Ctx) -> dict[str, str]:
    return {t.key: t.name for t in people.list_teams(ctx.session)}


@page(router, "/playbooks")
def playbooks_page(
    request: Request,
    ctx: Ctx,
    *,
    query=None,
    forms=None,
    status: int = 200,
    checked: dict[str, Any] | None = None,
) -> Response:
    newest: dict[str, Playbook] = {}
    older: dict[str, list[Playbook]] = {}
    for row in playbooks.list_playbooks(ctx.session):
        if row.name in newest:
            older.setdefault(row.name, []).append(newest[row.name])
        newest[row.name] = row
    return render(
        request,
        ctx,
        "playbooks.html",
        status=status,
        books=sorted(newest.values(), key=lambda b: b.title),
        older=older,
        can_check=people.is_admin(ctx.session, ctx.me),
        checked=checked,
        forms=forms or {},
        section="playbooks",
    )


@page(router, "/playbooks/{playbook_id}")
def playbook_page(
    request: Request, ctx: Ctx, playbook_id: int, *, query=None, forms=None, status: int = 200
) -> Response:
    row = ctx.session.get(Playbook, playbook_id)
    if row is None:
        raise NotFound(f"no playbook with id {playbook_id}")
    spec = playbooks.spec_of(row)
    return render(
        request,
        ctx,
        "playbook.html",
        status=status,
        book=row,
        view=preview(spec, _team_names(ctx)),
        can_start=ctx.me.role is Role.POINT_PERSON,
        forms=forms or {},
        section="playbooks",
    )


@router.post("/playbooks/check")
async def playbook_check_post(request: Request, ctx: PageCtx) -> Response:
    upload = ctx.form.get("file") if ctx.form is not None else None
    data = form_values(ctx.form)
    try:
        require_admin(ctx, "check playbook files")
        if upload is None or isinstance(upload, str) or not getattr(upload, "filename", ""):
            raise InvalidInput("choose a playbook file (YAML)", field="file")
        raw = await upload.read(MAX_PLAYBOOK_FILE + 1)
        if len(raw) > MAX_PLAYBOOK_FILE:
            raise InvalidInput("the file is larger than 512 KB; is it a playbook?", field="file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text", field="file") from None
    except DomainError as exc:
        state = FormState(values=data, error=exc.message, fields={"file": exc.message})
        return playbooks_page(request, ctx, forms={"check": state}, status=status_of(exc))
    result = check_text(text, upload.filename)
    checked: dict[str, Any] = {"file": upload.filename, "problems": result.problems}
    if result.spec is not None:
        checked["view"] = preview(result.spec, _team_names(ctx))
        checked["name"] = f"{result.spec.title} (version {result.spec.version})"
    return playbooks_page(
        request, ctx, checked=checked, status=200 if result.spec is not None else 422
    )
