"""The agreement, its changes, campaigns and materials on the command line (issue 20): a lead
proposes, a member is refused in one line, the agreement shows the change and exports as
Markdown, a campaign's material is rated by sales."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from typer.testing import CliRunner

from aligncycle import cli_common
from aligncycle.cli import app
from aligncycle.web import seed
from models.base import utcnow
from models.services import agreements
from models.tables import Cycle
from tests.conftest import db_snapshot

REASON = "Reps cover two time zones: a day is not enough to call back"

runner = CliRunner()


def cli(*args: Any, code: int = 0) -> Any:
    cli_common.reset_store()
    result = runner.invoke(app, [str(a) for a in args], env={"ALIGNCYCLE_ACTOR": None})
    assert result.exit_code == code, (args, result.output)
    assert "Traceback" not in result.output
    return result


def test_the_command_line_proposes_signs_and_exports(store: Any) -> None:  # noqa: ANN401
    with store.unit_of_work() as s:
        seed.seed_org(s)
        c = seed.start(s, "Hand-off, spring", utcnow().date() - timedelta(days=3))
        gap_ids = seed.to_plan(s, c, ["Leads wait too long for a first call"])
        cid = c.id
    before = db_snapshot(store)
    sid, lee = ("--as", "sid@acme.test"), ("--as", "lee@acme.test")
    meg = ("--owner", "meg@acme.test")
    refused = cli(
        "agreement",
        "propose",
        cid,
        "--sla-hours",
        48,
        "--reason",
        REASON,
        "--as",
        "sid@acme.test",
        code=1,
    )
    assert refused.stdout == "" and refused.stderr.startswith("error: ")
    assert "leads and point persons" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert db_snapshot(store) == before  # refused: nothing written
    out = cli(
        "agreement",
        "propose",
        cid,
        "--sla-hours",
        48,
        "--target",
        "sla_attainment=90%",
        "--gap",
        gap_ids[0],
        "--reason",
        REASON,
        *lee,
    ).output
    change_id = int(re.search(r"change (\d+)", out).group(1))
    shown = cli("agreement", "show", cid).output
    assert "Hand-off time: 24 hours -> 48 hours" in shown and "no target yet -> 90.0%" in shown
    cli("agreement", "sign", change_id, "--as", "sam@acme.test", code=1)  # still in Plan
    md = cli("agreement", "export", cid, *sid).output
    assert md.startswith("# The agreement of") and "24 hours" in md
    with store.unit_of_work() as s:
        agreement_id = agreements.agreement_of(s, s.get(Cycle, cid)).id
    out = cli(
        "campaign",
        "add",
        agreement_id,
        "--name",
        "Spring webinars",
        "--owner",
        "meg@acme.test",
        *lee,
    ).output
    campaign_id = int(re.search(r"campaign (\d+)", out).group(1))
    out = cli(
        "campaign",
        "material",
        campaign_id,
        "--title",
        "Webinar deck",
        "--kind",
        "deck",
        "--owner",
        "meg@acme.test",
        *lee,
    ).output
    material_id = int(re.search(r"material (\d+)", out).group(1))
    cli("campaign", "rate", material_id, "--usefulness", 9, *sid, code=1)
    cli("campaign", "rate", material_id, "--usefulness", 4, *meg[1:], code=2)  # no --as
    cli("campaign", "rate", material_id, "--usefulness", 4, *sid)
    listed = cli("campaign", "list", agreement_id, *sid).output
    assert "Webinar deck" in listed and "4.0 of 5 (1)" in listed


def test_the_command_line_refuses_to_close_a_recap_while_a_change_waits(store: Any) -> None:  # noqa: ANN401
    from models.phases import agreement as agreement_phase
    from models.schemas import CheckInCreate, RetrospectiveRecord
    from models.services import actions, cycles, recap
    from models.services.agreements import AmendmentCreate, Changes
    from models.services.common import person_by_email

    def p(s: Any, name: str) -> Any:  # noqa: ANN401
        return person_by_email(s, f"{name}@acme.test")

    today = utcnow().date()
    with store.unit_of_work() as s:
        seed.seed_org(s)
        c = seed.start(s, "Hand-off, spring", today - timedelta(days=50))
        gap_ids = seed.to_plan(s, c, ["Leads wait too long for a first call"])
        acts = seed.plan_actions(s, c, gap_ids, today - timedelta(days=20))
        change = AmendmentCreate(changes=Changes(handoff_sla_hours=48), reason=REASON)
        a = agreements.propose(s, c, change, p(s, "lee"))
        sam = p(s, "sam")
        seed.answer_phase(s, c, sam)
        cycles.advance_cycle(s, c, sam)
        for item in acts:
            actions.add_checkin(s, actions.get_action(s, item), CheckInCreate(status="done"), sam)
        seed.answer_phase(s, c, sam)
        cycles.advance_cycle(s, c, sam)
        seed.answer_phase(s, c, sam)
        recap.record_retrospective(s, c, RetrospectiveRecord(), sam)
        recap.sign_off(s, c, p(s, "max"))
        agreement_phase.sign(s, a, sam)
        cid, aid = c.id, a.id
    before = db_snapshot(store)
    refused = cli("cycle", "advance", cid, "--no-flows", "--as", "sam@acme.test", code=1)
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (
        "1 change to the agreement waiting to be signed or rejected: "
        f"“{REASON}” (Mia Marketing of Marketing still has to sign)"
    ) in refused.stderr
    assert db_snapshot(store) == before
    shown = cli("agreement", "show", cid, "--as", "sid@acme.test").stdout
    assert "waiting for the point person of Marketing" in shown
    assert "does not close until both point persons sign it" in shown
    cli("agreement", "reject", aid, "--note", "Not this quarter", "--as", "mia@acme.test")
    moved = cli("cycle", "advance", cid, "--no-flows", "--as", "sam@acme.test")
    assert "-> Closed" in moved.stdout or "closed" in moved.stdout.lower()
    with store.unit_of_work() as s:
        assert s.get(Cycle, cid).phase.value == "closed"
    # the KPIs of the cycle, each against the target in force (no data: nothing to compare)
    shown = cli("kpi", "show", "--cycle", cid).stdout
    assert "The playbook's threshold 80.0%: no data to compare." in shown


def test_a_rating_on_the_command_line_answers_the_content_question(store: Any) -> None:  # noqa: ANN401
    from datetime import date

    from models import phases
    from models.schemas import CycleCreate
    from models.services import campaigns
    from models.services.campaigns import CampaignCreate, MaterialCreate
    from models.services.common import person_by_email

    with store.unit_of_work() as s:
        seed.seed_org(s)
        c = phases.start_cycle(
            s,
            CycleCreate(
                playbook="campaign-content-alignment",
                title="Content, spring",
                period_start=date.today(),
                period_end=date.today() + timedelta(days=42),
                point_persons=["mia@acme.test"],
            ),
            person_by_email(s, "sam@acme.test"),
        )
        s.flush()
        lee = person_by_email(s, "lee@acme.test")
        camp = campaigns.add_campaign(
            s, agreements.agreement_of(s, c), CampaignCreate(name="Spring webinars"), lee
        )
        s.flush()
        decks = [
            campaigns.add_material(
                s, camp, MaterialCreate(title=f"Deck {i}", kind="deck", owner="meg@acme.test"), lee
            )
            for i in range(3)
        ]
        s.flush()
        cid, deck = c.id, decks[0].id
    cli("campaign", "rate", deck, "--usefulness", 2, "--as", "sid@acme.test")
    shown = cli("checklist", "show", cid).stdout
    assert "What the records say about the open questions:" in shown
    assert "3 of 3 unused or not useful (2 nobody has rated, 1 rated not useful" in shown
    assert "the ratings point to the answer “yes”" in shown
