"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from migrations import runner
from models.db import make_engine
from models.enums import Phase
from models.metadata import metadata


def test_upgrade_downgrade_upgrade_and_no_drift(database_url: str, store) -> None:  # noqa: ANN001
    engine = make_engine(database_url)
    try:
        assert runner.current(engine) == runner.heads()
        runner.downgrade(engine, "base")
        remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        runner.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
        assert runner.current(engine) == runner.heads()
        runner.check(engine)  # raises if the models and the migrations disagree
        _assert_events_guarded(engine)
    finally:
        engine.dispose()


def _log_one(engine: Engine) -> int:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO events (at, verb, object_type) VALUES (:at, 'test.logged', 'test')"),
            {"at": "2025-01-01 00:00:00"},
        )
        return conn.execute(text("SELECT max(id) FROM events")).scalar_one()


def _assert_events_guarded(engine: Engine) -> None:
    event_id = _log_one(engine)
    for sql in ("UPDATE events SET verb = 'x' WHERE id = :id", "DELETE FROM events WHERE id = :id"):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql), {"id": event_id})


def test_0005_guards_the_audit_log_and_its_downgrade_lifts_the_guard(
    database_url: str,
    store,  # noqa: ANN001 - empties the store before and after
) -> None:
    engine = make_engine(database_url)
    try:
        _assert_events_guarded(engine)
        runner.downgrade(engine, "0004")
        event_id = _log_one(engine)
        with engine.begin() as conn:  # 0004 had no guard: the log could be rewritten
            conn.execute(text("UPDATE events SET verb = 'x' WHERE id = :id"), {"id": event_id})
            conn.execute(text("DELETE FROM events"))
        runner.upgrade(engine)
        assert runner.current(engine) == runner.heads()
        _assert_events_guarded(engine)
    finally:
        runner.upgrade(engine)
        engine.dispose()


# --- 0008: links between action items and gaps, sign-off, survey batches --------------------


def _filled_store(org) -> dict[str, int]:  # noqa: ANN001
    """A store with what 0008 converts: template proposals, an item with a check-in, a
    target and a notification, an item carried into a follow-up (it refers to the first)."""
    from datetime import timedelta

    from models.cadence.tables import Notification, NotificationKind
    from models.funnel.tables import ActionTarget
    from models.phases import plan
    from models.schemas import CheckInCreate, SurveyRespond
    from models.services import actions, gaps, recap
    from tests.test_services import (
        LOU,
        SID,
        TODAY,
        C,
        P,
        add_action,
        advance,
        answer_all,
        start,
        to_plan,
    )

    first = start(org)
    gap_id = to_plan(org, first)
    with org.unit_of_work() as s:
        proposed = plan.propose_actions(s, C(s, first), TODAY)
        item = add_action(s, first, gaps.get_gap(s, gap_id), counterpart=LOU)
        answer_all(s, first, Phase.PLAN)
        advance(s, first)
        actions.add_checkin(s, item, CheckInCreate(note="started", progress=10), P(s, SID))
        s.add(
            ActionTarget(
                action_item_id=item.id,
                kpi="sla_attainment",
                target=0.9,
                window_start=TODAY,
                window_end=TODAY + timedelta(days=7),
            )
        )
        s.add(
            Notification(
                key=f"reminder:{item.id}",
                recipient=SID,
                kind=NotificationKind.REMINDER,
                cycle_id=first,
                action_item_id=item.id,
                subject="Due soon",
                body="Agree the hand-off SLA is due soon.",
            )
        )
        answer_all(s, first, Phase.EXECUTE)
        advance(s, first, override_reason="the rest goes to the next cycle")
        for who in (SID, LOU, "meg@acme.test"):  # one batch of survey answers
            recap.respond(s, C(s, first), SurveyRespond(score=4, anonymous=True), P(s, who))
        ids = {"gap": gap_id, "item": item.id, "template": proposed[0].id, "cycle": first}
    ids["follow_up"] = start(org, previous_cycle_id=first, title="Q2")
    return ids


def _without(snapshot: dict[str, list[str]], table: str, first: int) -> dict[str, list]:
    """The snapshot without ``table``'s rows whose first column is ``first`` (each row is
    the repr of its values)."""
    out = dict(snapshot)
    out[table] = [row for row in snapshot[table] if not row.startswith(f"({first},")]
    return out


def test_0008_carries_every_row_down_and_up_again(database_url: str, org) -> None:  # noqa: ANN001
    """Downgrade to 0006 puts each item's gap back in ``action_items.gap_id`` (and the keys
    the old code proposes with); upgrading moves them into ``action_item_gaps`` again. On
    SQLite the table is rebuilt: no check-in, target, notification or carried item is lost.
    A copy the old code proposed for a second gap keeps its key; the oldest takes the
    template's."""
    from tests.conftest import db_snapshot

    ids = _filled_store(org)
    before = db_snapshot(org)
    kept = {"check_ins", "notifications", "action_targets", "action_item_gaps", "survey_responses"}
    assert all(len(rows) for t, rows in before.items() if t in kept)
    engine = make_engine(database_url)
    try:
        runner.downgrade(engine, "0006")
        with engine.begin() as conn:
            gap_of = dict(conn.execute(text("SELECT id, gap_id FROM action_items")).all())
            assert gap_of[ids["item"]] == ids["gap"]
            template_key = conn.execute(
                text("SELECT key FROM action_items WHERE id = :id"), {"id": ids["template"]}
            ).scalar_one()
            assert template_key.startswith(f"template:{ids['gap']}:")
            # what the old code did for a second gap of the same category: a copy
            copy = conn.execute(
                text(
                    "INSERT INTO action_items (cycle_id, gap_id, key, title, priority, status, "
                    "confidence, created_at, updated_at, version) SELECT cycle_id, gap_id, "
                    ":key, title, priority, status, confidence, created_at, updated_at, 1 "
                    "FROM action_items WHERE id = :id RETURNING id"
                ),
                {"key": "template:999:" + template_key.split(":")[2], "id": ids["template"]},
            ).scalar_one()
        runner.upgrade(engine)
        after = db_snapshot(org)
        # 0017's tables (each cycle start writes the teams' agreement) did not exist at 0006:
        # going below 0017 drops them, by design; every row 0008 moves comes back
        for t in ("agreements", "agreement_versions"):
            assert after[t] == [] and before.pop(t) and after.pop(t) == []
        assert _without(_without(after, "action_items", copy), "action_item_gaps", copy) == before
        with engine.connect() as conn:
            keys = dict(conn.execute(text("SELECT id, key FROM action_items")).all())
            links = conn.execute(
                text("SELECT gap_id FROM action_item_gaps WHERE action_item_id = :id"),
                {"id": copy},
            ).all()
        assert keys[ids["template"]] == "template:" + template_key.split(":")[2]
        assert keys[copy] == "template:999:" + template_key.split(":")[2]
        assert links == [(ids["gap"],)]
        runner.check(engine)
    finally:
        runner.upgrade(engine)
        engine.dispose()


def test_0008_downgrade_refuses_items_that_address_several_gaps(database_url: str, org) -> None:  # noqa: ANN001
    from migrations.runner import MigrationRefused
    from models.services import actions, gaps
    from tests.conftest import db_snapshot
    from tests.test_services import LEE, C, P, accept, add_action, add_gap, start, to_plan

    cycle_id = start(org)
    gap_id = to_plan(org, cycle_id)
    with org.unit_of_work() as s:
        other = accept(s, add_gap(s, cycle_id, "Leads bounce between reps"))
        item = add_action(s, cycle_id, gaps.get_gap(s, gap_id))
        assert actions.link_gap(s, item, other.id, P(s, LEE))
        assert C(s, cycle_id).id == cycle_id
        item_id = item.id
    before = db_snapshot(org)
    engine = make_engine(database_url)
    try:
        with pytest.raises(MigrationRefused) as err:
            runner.downgrade(engine, "0006")
        assert str(err.value).startswith(
            f"these action items address several gaps, and the older schema holds one gap per "
            f"item: action item {item_id} (2 gaps); unlink all but one gap of each"
        )
        assert runner.current(engine) == runner.heads()
        assert db_snapshot(org) == before
    finally:
        engine.dispose()
