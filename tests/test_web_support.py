"""Helpers of the web tests (a world of cycles, people who act in it, isolated requests), and the
checks that the demo world itself is what the other tests assume.

``Rig`` binds the app to one database connection inside a transaction that is never committed:
every request runs in a savepoint that the test rolls back, so hundreds of requests (the
permission matrix, the fuzz run) share one world built once, and leave nothing behind.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from aligncycle.web import create_app, seed
from aligncycle.web.auth import SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from models.accounts import ApiToken
from models.base import utcnow
from models.db import Store, make_engine
from models.enums import Phase
from models.metadata import metadata
from models.schemas import PersonCreate, SurveyRespond, TeamCreate
from models.services import accounts, cycles, people, recap, reports
from models.services.common import person_by_email
from models.tables import Cycle
from tests.conftest import every_row

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx dependency
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

#: Who acts in the tests: name -> email. Besides the shared organisation: ``pia``, a point person
#: who is not a point person of any cycle, and ``ola``, a lead of a third team that takes part
#: in no cycle (every cycle is "another team's" for her).
PERSONAS = {
    "sid": "sid@acme.test",  # sales member, owns an action item
    "meg": "meg@acme.test",  # marketing member
    "lee": "lee@acme.test",  # sales lead
    "sam": "sam@acme.test",  # sales point person of every cycle
    "pia": "pia@acme.test",  # sales point person, of no cycle
    "max": "max@acme.test",  # manager
    "ola": "ola@acme.test",  # lead of team "support", in no cycle
}


def savepoint_engine(url: str) -> Engine:
    """An engine whose connections support SAVEPOINT on SQLite too (pysqlite needs help)."""
    if not url.startswith("sqlite"):
        return make_engine(url)
    engine = make_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _no_implicit_tx(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN")

    return engine


class ConnStore(Store):
    """A store whose units of work are savepoints on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.engine = conn.engine
        self.sessions = sessionmaker(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )


@dataclass
class Persona:
    email: str
    id: int
    cookie: str
    csrf: str
    token: str


@dataclass
class Rig:
    conn: Connection
    store: ConnStore
    app: Any
    world: seed.World
    personas: dict[str, Persona]
    extra: dict[str, int] = field(default_factory=dict)

    def client(self, who: str | None = None) -> TestClient:
        c = TestClient(self.app, follow_redirects=False)
        if who is not None:
            c.cookies.set(SESSION_COOKIE, self.personas[who].cookie)
        return c

    def login(self, email: str) -> TestClient:
        """A client signed in as anyone (not only the personas)."""
        with self.store.unit_of_work() as s:
            raw, _ = accounts.create_session(s, person_by_email(s, email))
        c = TestClient(self.app, follow_redirects=False)
        c.cookies.set(SESSION_COOKIE, raw)
        return c

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.personas[who].token}"}

    @contextmanager
    def isolated(self) -> Iterator[None]:
        sp = self.conn.begin_nested()
        try:
            yield
        finally:
            sp.rollback()

    def snapshot(self) -> dict[str, list[str]]:
        """Every row of every table, seen through the rig's connection."""
        return every_row(self.conn)

    def session(self) -> Session:
        return self.store.sessions()


def recap_cycle(s: Session, title: str, answers: list[tuple[str, int]] = ()) -> Cycle:  # type: ignore[assignment]
    """A cycle taken to Recap (work done, period over), with these survey answers."""
    today = utcnow().date()
    c = seed.start(s, title, today - timedelta(days=50))
    gap_ids = seed.to_plan(s, c, ["Hand-off notes are missing"])
    acts = seed.plan_actions(s, c, gap_ids, today - timedelta(days=20))
    sam = person_by_email(s, "sam@acme.test")
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    from models.schemas import CheckInCreate
    from models.services import actions

    for a in acts:
        actions.add_checkin(s, actions.get_action(s, a), CheckInCreate(status="done"), sam)
    seed.answer_phase(s, c, sam)
    cycles.advance_cycle(s, c, sam)
    for email, score in answers:
        recap.respond(s, c, SurveyRespond(score=score, anonymous=True), person_by_email(s, email))
    assert c.phase is Phase.RECAP
    return c


def populate(s: Session) -> tuple[seed.World, dict[str, int]]:
    """The demo world, the two extra personas, and a few cycles the matrix needs."""
    seed.seed_org(s)
    people.create_team(s, TeamCreate(key="support", name="Support"))
    s.flush()
    people.create_person(
        s,
        PersonCreate(
            name="Pia Pointless", email="pia@acme.test", team="sales", role="point_person"
        ),
    )
    people.create_person(
        s, PersonCreate(name="Ola Outside", email="ola@acme.test", team="support", role="lead")
    )
    s.flush()
    world = seed.build_world(s)
    reports.save_recap_report(  # as the recap flow stores it
        s, world.cycles["recap"], "a recap", "# Recap\n\nWhat happened.", utcnow().date()
    )
    sam = person_by_email(s, "sam@acme.test")
    ready = seed.start(s, "Ready to plan", utcnow().date())
    seed.answer_phase(s, ready, sam)
    survey = recap_cycle(s, "Survey open")
    s.flush()
    return world, {"ready": ready.id, "survey": survey.id}


def make_personas(s: Session) -> dict[str, Persona]:
    out = {}
    for name, email in PERSONAS.items():
        p = person_by_email(s, email)
        raw, ws = accounts.create_session(s, p)
        token, _ = accounts.create_token(s, p, "tests")
        out[name] = Persona(email=email, id=p.id, cookie=raw, csrf=ws.csrf_token, token=token)
    # Marked as used just now, so no request writes ``last_used_at`` (snapshots stay equal).
    s.execute(update(ApiToken).values(last_used_at=utcnow()))
    s.flush()
    return out


@contextmanager
def rig(database_url: str, tmp_path: Any) -> Iterator[Rig]:
    """The app on a populated world inside one transaction that is rolled back at the end."""
    engine = savepoint_engine(database_url)
    conn = engine.connect()
    outer = conn.begin()
    try:
        for table in reversed(metadata.sorted_tables):  # start empty (undone at the end too)
            conn.execute(table.delete())
        store = ConnStore(conn)
        with store.unit_of_work() as s:
            world, extra = populate(s)
            personas = make_personas(s)
        # No background dispatcher: the store is one connection, and schemathesis starts the
        # app's lifespan without ending it.
        settings = WebSettings(data_dir=tmp_path, secret_key="test-secret", web_runs_flows=False)
        app = create_app(store, settings)
        yield Rig(conn, store, app, world, personas, extra)
    finally:
        outer.rollback()
        conn.close()
        engine.dispose()


# --- the world the other web tests rely on ------------------------------------------------


def test_demo_world_has_a_cycle_in_every_phase(org: Store) -> None:
    with org.unit_of_work() as s:
        world = seed.build_world(s)
    with org.unit_of_work() as s:
        phases = {
            name: s.scalar(select(Cycle.phase).where(Cycle.id == cid))
            for name, cid in world.cycles.items()
        }
    assert phases == {p.value: p for p in Phase}


def test_rig_requests_leave_nothing_behind(database_url: str, tmp_path) -> None:  # noqa: ANN001
    with rig(database_url, tmp_path) as r:
        before = r.snapshot()
        with r.isolated():
            resp = r.client().post(
                f"/api/v1/cycles/{r.world.cycles['identify']}/gaps",
                headers=r.bearer("sid"),
                json={
                    "title": "Written in a savepoint",
                    "category": "other",
                    "root_cause": "process",
                },
            )
            assert resp.status_code == 201, resp.text
            assert r.snapshot() != before
        assert r.snapshot() == before
