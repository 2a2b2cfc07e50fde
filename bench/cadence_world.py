"""The company the cadence benchmark runs against: a store seeded with cycles in Execute,
action items, two teams of people each with a personal webhook channel, and the local HTTP
receiver those channels point at. Not a benchmark: it has no ``main``.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent


class _Server(HTTPServer):
    request_queue_size = 256  # four sending threads may connect at once


class CountingReceiver:
    """Answers 200 to every POST and counts them (apprise's json:// target). One thread, one
    request per connection: the harness takes as little of the machine's CPU as it can (it
    shares the cores with what is measured)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed(url: str, cycles: int, items: int, today: date, receiver_port: int) -> dict[str, int]:
    """Migrate and fill the store: people and channels through the services, cycles and action
    items through multi-row Core inserts."""
    from sqlalchemy import insert

    from migrations import runner
    from models.cadence import channels
    from models.db import Store
    from models.enums import ActionStatus, Confidence, Phase, Priority, Role
    from models.schemas import PersonCreate, TeamCreate
    from models.services import people, playbooks
    from models.tables import ActionItem, Cycle, CycleTeam

    rng = random.Random(20261122)
    store = Store(url)
    runner.upgrade(store.engine)
    staff: dict[tuple[str, str], list[int]] = {}
    with store.unit_of_work() as s:
        playbooks.sync_directory(s, PROJECT / "playbooks")
        playbook_id = playbooks.get_playbook(s, "sales-marketing-handoff").id
        team_ids = {}
        for key in ("sales", "marketing"):
            team_ids[key] = people.create_team(s, TeamCreate(key=key, name=key.title())).id
        made = []
        for key in team_ids:
            for role, n in {"point_person": 3, "lead": 3, "manager": 1, "member": 40}.items():
                for i in range(n):
                    p = people.create_person(
                        s,
                        PersonCreate(
                            name=f"{key} {role} {i}",
                            email=f"{role}{i}@{key}.bench",
                            team=key,
                            role=Role(role),
                        ),
                    )
                    made.append(p)
        s.flush()
        for p in made:
            staff.setdefault((p.role.value, p.team.key), []).append(p.id)
        admin = next(p for p in made if p.role is Role.MANAGER)
        for p in made:
            channels.add_channel(
                s,
                admin,
                kind="webhook",
                person=p.email,
                url=f"json://127.0.0.1:{receiver_port}/{p.id}",
            )
    owners = {
        key: staff[("member", key)] + staff[("lead", key)] + staff[("point_person", key)]
        for key in team_ids
    }
    now = datetime.now(UTC)
    start = today - timedelta(days=21)
    end = today + timedelta(days=42)
    with store.engine.begin() as conn:
        cycle_rows = [
            {
                "playbook_id": playbook_id,
                "title": f"Bench cycle {i}",
                "period_start": start,
                "period_end": end,
                "phase": Phase.EXECUTE,
                "created_by_id": staff[("point_person", "sales")][0],
                "created_at": now,
                "updated_at": now,
                "phase_changed_at": now,
                "version": 1,
            }
            for i in range(cycles)
        ]
        ids = [
            r[0]
            for r in conn.execute(
                insert(Cycle.__table__).returning(Cycle.__table__.c.id), cycle_rows
            )
        ]
        conn.execute(
            insert(CycleTeam.__table__),
            [
                {
                    "cycle_id": cid,
                    "team_id": team_ids[key],
                    "point_person_id": rng.choice(staff[("point_person", key)]),
                }
                for cid in ids
                for key in team_ids
            ],
        )
        action_rows = []
        for cid in ids:
            for n in range(items):
                due = today + timedelta(days=rng.randint(-20, 40))
                # The runs simulate days up to today + 3: what is due by then is mostly done.
                past = due <= today + timedelta(days=1)
                roll = rng.random()
                if past:  # most past-due work is finished in a healthy company
                    status = (
                        ActionStatus.DONE
                        if roll < 0.80
                        else ActionStatus.DROPPED
                        if roll < 0.85
                        else rng.choice(
                            [ActionStatus.OPEN, ActionStatus.IN_PROGRESS, ActionStatus.BLOCKED]
                        )
                    )
                else:
                    status = (
                        ActionStatus.DONE
                        if roll < 0.15
                        else rng.choice([ActionStatus.OPEN, ActionStatus.IN_PROGRESS])
                    )
                team = "sales" if n % 2 else "marketing"
                action_rows.append(
                    {
                        "cycle_id": cid,
                        "key": f"bench:{n}",
                        "title": f"Action {n} of cycle {cid}",
                        "owner_id": rng.choice(owners[team]),
                        "assigned_by_id": rng.choice(staff[("lead", team)]),
                        "priority": Priority.MEDIUM,
                        "due_date": due,
                        "status": status,
                        "confidence": Confidence.ON_TRACK,
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                )
        for i in range(0, len(action_rows), 5000):
            conn.execute(insert(ActionItem.__table__), action_rows[i : i + 5000])
    store.dispose()
    return {"cycles": len(ids), "action_items": len(action_rows), "people": len(made)}
