"""The cadence flows: what keeps a cycle moving between the phases.

=====================  ==========  =========================================================
flow                   schedule    what it does
=====================  ==========  =========================================================
``execute-checkins``   weekly      raises confidence flags from the facts (overdue →
                                   off_track, due soon and not started → at_risk) and asks
                                   owners for progress, once per cadence period of each cycle
``daily-cadence``      daily       the two below in one flow run: reminders, then escalations
``overdue-reminders``  on demand   reminds owners of items due soon, and of overdue ones
``escalations``        on demand   overdue past a grace period: the owner's lead, then a
                                   manager; leads of the SLA breach ledger late past the
                                   playbook's threshold: the managers, once each
``weekly-digest``      work days   per cycle, as often as the cadence in force for its team
                                   pair says (daily, weekly, fortnightly, monthly): progress,
                                   KPIs, risks, what is due by the next digest
``recap-due``          daily       opens Recap when a cycle's period has ended (the system's
                                   own transition, through the Execute gate)
``scheduled-starts``   daily       starts the next cycle of playbooks with ``starts_every``
                                   (point persons by role, open work carried over) and tells
                                   the point persons
=====================  ==========  =========================================================

Each flow is two tasks, whatever the number of cycles: **plan** (one transaction, set-based
queries, notifications inserted with idempotency keys) then **deliver** (the pending
notifications of that kind, claimed by (channel, person) and sent as one message per person and
channel for reminders and escalations; see :mod:`flows.notify`). A retried or duplicated run
plans nothing twice and sends nothing twice.

The daily jobs run as one flow run (``daily-cadence``): a flow run on a process worker starts a
Python process, imports Prefect and the project and talks to the server before any work
(about 3 s of CPU, 6-10 s on a loaded 2-core machine), so one a day instead of two halves what
the daily run spends outside its own work. Each job still plans and delivers on its own (two
tasks each), and a job that fails does not stop the other.

The same jobs run without Prefect through :func:`run_job` (``aligncycle cadence run NAME
--without-prefect``, the tests and the benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from flows import notify
from models.cadence.checkins import plan_checkins, update_confidence
from models.cadence.digest import plan_digests
from models.cadence.escalations import plan_escalations
from models.cadence.planning import PlanResult
from models.cadence.policy import CadencePolicy
from models.cadence.recap_due import open_recaps_due, plan_recap_due
from models.cadence.reminders import plan_reminders
from models.cadence.tables import NotificationKind
from models.config import StoreSettings
from models.db import Store
from models.phases.schedule import plan_scheduled_starts


@lru_cache(maxsize=4)
def _store(url: str) -> Store:
    return Store(url)


def default_store() -> Store:
    """The store named by ``ALIGNCYCLE_DATABASE_URL`` in the worker's environment."""
    return _store(StoreSettings().effective_database_url)


def _plan_checkins(s: Session, today: date, policy: CadencePolicy) -> PlanResult:
    changed = update_confidence(s, today, policy)
    result = plan_checkins(s, today, policy)
    result.changed = changed
    return result


def _plan_recap_due(s: Session, today: date, policy: CadencePolicy) -> PlanResult:
    # The transition and the messages about it commit together, or not at all.
    return plan_recap_due(s, today, open_recaps_due(s, today))


@dataclass(frozen=True)
class Job:
    name: str
    plan: Callable[[Session, date, CadencePolicy], PlanResult]
    kinds: tuple[NotificationKind, ...]
    description: str


JOBS: dict[str, Job] = {
    j.name: j
    for j in (
        Job(
            "execute-checkins",
            _plan_checkins,
            (NotificationKind.CHECKIN,),
            "update confidence from the facts and ask owners for progress",
        ),
        Job(
            "overdue-reminders",
            plan_reminders,
            (NotificationKind.REMINDER,),
            "remind owners of items due soon or overdue",
        ),
        Job(
            "escalations",
            plan_escalations,
            (NotificationKind.ESCALATION,),
            "escalate overdue items to the owner's lead, then a manager; late leads to managers",
        ),
        Job(
            "weekly-digest",
            lambda s, today, p: plan_digests(s, today),
            (NotificationKind.DIGEST,),
            "send each cycle's digest to both teams when its cadence says",
        ),
        Job(
            "recap-due",
            _plan_recap_due,
            (NotificationKind.RECAP_DUE,),
            "open Recap for cycles whose period ended",
        ),
        Job(
            "scheduled-starts",
            plan_scheduled_starts,
            (NotificationKind.CYCLE_STARTED,),
            "start the next cycle of playbooks that start on a schedule",
        ),
    )
}


def policy_from(
    remind_days_before: int = 2,
    escalate_after_days: int = 2,
    escalate_to_manager_after_days: int = 3,
    cadence: str = "weekly",
) -> CadencePolicy:
    return CadencePolicy(
        remind_days_before=remind_days_before,
        escalate_after_days=escalate_after_days,
        escalate_to_manager_after_days=escalate_to_manager_after_days,
        cadence=cadence,
    )


def plan_job(
    name: str, store: Store, today: date | None = None, policy: CadencePolicy | None = None
) -> dict[str, Any]:
    """The planning half of a job, in one transaction."""
    job = JOBS[name]
    started = time.perf_counter()
    with store.unit_of_work() as s:
        result = job.plan(s, today or date.today(), policy or CadencePolicy())
    return result.as_dict() | {"seconds": round(time.perf_counter() - started, 3)}


def deliver_job(
    name: str,
    store: Store,
    workers: int = 4,
    stale_after_seconds: float = notify.DEFAULT_STALE_AFTER.total_seconds(),
    **kwargs: Any,
) -> dict[str, Any]:
    """The delivery half: the pending notifications of the job's kinds."""
    return notify.deliver(
        store,
        JOBS[name].kinds,
        workers=workers,
        stale_after=timedelta(seconds=stale_after_seconds),
        **kwargs,
    ).as_dict()


def run_job(
    name: str,
    store: Store,
    today: date | None = None,
    policy: CadencePolicy | None = None,
    deliver: bool = True,
    **deliver_kwargs: Any,
) -> dict[str, Any]:
    """Plan, then deliver, without Prefect."""
    out: dict[str, Any] = {"job": name, "plan": plan_job(name, store, today, policy)}
    if deliver:
        out["delivery"] = deliver_job(name, store, **deliver_kwargs)
    return out


# --- Prefect: two tasks per flow ------------------------------------------------------------


#: Both tasks are idempotent (keys, claims), so a transient failure (a dropped database
#: connection) is simply retried; nothing is cached between runs.
TASK_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@task(name="plan-notifications", **TASK_OPTIONS)
def plan_task(name: str, today: date, policy: dict[str, Any]) -> dict[str, Any]:
    return plan_job(name, default_store(), today, policy_from(**policy))


@task(name="deliver-notifications", **TASK_OPTIONS)
def deliver_task(
    name: str, workers: int, stale_after_seconds: float, retry_delays: list[float]
) -> dict[str, Any]:
    return deliver_job(
        name, default_store(), workers, stale_after_seconds, retry_delays=retry_delays
    )


def prune_outboxes(store: Store, retention_days: int | None = None) -> dict[str, Any]:
    """Prune the done rows of both outboxes older than the retention (one transaction)."""
    from models.retention import prune_outboxes as prune

    days = retention_days or StoreSettings().outbox_retention_days
    with store.unit_of_work() as s:
        return prune(s, days).as_dict()


@task(name="prune-outboxes", **TASK_OPTIONS)
def prune_task(retention_days: int | None) -> dict[str, Any]:
    return prune_outboxes(default_store(), retention_days)


#: A failed send is tried again within the run after 30 s, then after 2 minutes (the third
#: attempt is the last: then the message is marked failed and the run says so).
RETRY_DELAYS = (30.0, 120.0)

#: The final state of a run that could not deliver every message (Failed, so it stands out).
UNDELIVERED = "Undelivered"


def undelivered_message(delivery: dict[str, Any]) -> str | None:
    """One sentence for a run that left messages undelivered, or None."""
    failed, retrying = delivery.get("failed", 0), delivery.get("retrying", 0)
    if not failed and not retrying:
        return None
    parts = []
    if failed:
        parts.append(f"{failed} failed for good")
    if retrying:
        parts.append(f"{retrying} to be tried again by the next run")
    first = (delivery.get("errors") or [""])[0]
    return (
        f"{failed + retrying} message{'s' if failed + retrying != 1 else ''} could not be "
        f"delivered ({', '.join(parts)})" + (f"; first: {first}" if first else "")
    )


def _run_flow(
    name: str,
    today: date | None,
    policy: dict[str, Any],
    workers: int,
    stale: float,
    retry_delays: list[float] | None = None,
) -> Any:
    """Plan, deliver (retrying failed sends with backoff), and end Failed named
    "Undelivered" when messages could not be delivered (the run's result is still there)."""
    from prefect.states import Failed

    out, problem = _run_job(name, today, policy, workers, stale, retry_delays)
    if problem is not None:
        return Failed(name=UNDELIVERED, message=problem, data=out)
    return out


def _run_job(
    name: str,
    today: date | None,
    policy: dict[str, Any],
    workers: int,
    stale: float,
    retry_delays: list[float] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Inside a flow: plan, then deliver; (the result, what could not be delivered)."""
    logger = get_run_logger()
    day = today or date.today()
    plan = plan_task(name, day, policy)
    logger.info("%s %s: planned %s", name, day.isoformat(), plan)
    delays = list(RETRY_DELAYS if retry_delays is None else retry_delays)
    delivery = deliver_task(name, workers, stale, delays)
    logger.info("%s: delivered %s", name, {k: v for k, v in delivery.items() if k != "errors"})
    for err in delivery.get("errors", [])[:5]:
        logger.warning("%s: %s", name, err)
    out = {"job": name, "today": day.isoformat(), "plan": plan, "delivery": delivery}
    problem = undelivered_message(delivery)
    if problem is not None:
        logger.error("%s: %s", name, problem)
    return out, problem


STALE = notify.DEFAULT_STALE_AFTER.total_seconds()


@flow(name="execute-checkins")
def execute_checkins(
    today: date | None = None,
    cadence: str = "weekly",
    remind_days_before: int = 2,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Raise confidence flags from the facts and ask owners for progress (per-cycle cadence
    from the playbook; ``cadence`` is the default for playbooks that do not say)."""
    policy = {"cadence": cadence, "remind_days_before": remind_days_before}
    return _run_flow(
        "execute-checkins", today, policy, workers, stale_after_seconds, retry_delays_seconds
    )


@flow(name="overdue-reminders")
def overdue_reminders(
    today: date | None = None,
    remind_days_before: int = 2,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Remind owners of unfinished items due within ``remind_days_before`` days, or overdue."""
    policy = {"remind_days_before": remind_days_before}
    return _run_flow(
        "overdue-reminders", today, policy, workers, stale_after_seconds, retry_delays_seconds
    )


@flow(name="escalations")
def escalations(
    today: date | None = None,
    escalate_after_days: int = 2,
    escalate_to_manager_after_days: int = 3,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Escalate items overdue ``escalate_after_days`` days to the owner's lead, and
    ``escalate_to_manager_after_days`` days later to a manager."""
    policy = {
        "escalate_after_days": escalate_after_days,
        "escalate_to_manager_after_days": escalate_to_manager_after_days,
    }
    return _run_flow(
        "escalations", today, policy, workers, stale_after_seconds, retry_delays_seconds
    )


@flow(name="weekly-digest")
def weekly_digest(
    today: date | None = None,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Each cycle in Execute whose digest is due today (the cadence in force for its team
    pair): progress, KPIs, risks and what is due by the next digest, to both teams."""
    return _run_flow("weekly-digest", today, {}, workers, stale_after_seconds, retry_delays_seconds)


@flow(name="recap-due")
def recap_due(
    today: date | None = None,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Open Recap for cycles whose period ended (when the Execute gate allows), and tell the
    point persons (or what still blocks it)."""
    return _run_flow("recap-due", today, {}, workers, stale_after_seconds, retry_delays_seconds)


@flow(name="scheduled-starts")
def scheduled_starts(
    today: date | None = None,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """Start the next cycle of each team pair whose playbook starts on a schedule (point
    persons by role, open work carried over) and tell the point persons."""
    return _run_flow(
        "scheduled-starts", today, {}, workers, stale_after_seconds, retry_delays_seconds
    )


#: The jobs of the daily run, in order: owners are reminded before their leads hear of it.
#: The digests run on their own each working day (``weekly-digest``: each cycle's cadence
#: decides whether its digest is due, see :mod:`models.cadence.digest_periods`): one digest per
#: cycle and team, so a company's Monday digests outweigh the day's reminders and escalations.
DAILY = ("overdue-reminders", "escalations")


@flow(name="daily-cadence")
def daily_cadence(
    today: date | None = None,
    remind_days_before: int = 2,
    escalate_after_days: int = 2,
    escalate_to_manager_after_days: int = 3,
    workers: int = 4,
    stale_after_seconds: float = STALE,
    retention_days: int | None = None,
    retry_delays_seconds: list[float] | None = None,
) -> dict[str, Any]:
    """The daily run in one flow run: remind owners of items due within
    ``remind_days_before`` days or overdue, then escalate items overdue ``escalate_after_days``
    days to the owner's lead and ``escalate_to_manager_after_days`` days later to a manager.
    A job that fails does not stop the other; the flow run fails after both if one did. Last,
    the done rows of both outboxes older than ``retention_days`` (default
    ``ALIGNCYCLE_OUTBOX_RETENTION_DAYS``, 90) are pruned (:mod:`models.retention`)."""
    policies = {
        "overdue-reminders": {"remind_days_before": remind_days_before},
        "escalations": {
            "escalate_after_days": escalate_after_days,
            "escalate_to_manager_after_days": escalate_to_manager_after_days,
        },
    }
    from prefect.states import Failed

    jobs: dict[str, Any] = {}
    problems: list[str] = []
    failures: list[BaseException] = []
    for name in DAILY:
        try:
            jobs[name], problem = _run_job(
                name, today, policies[name], workers, stale_after_seconds, retry_delays_seconds
            )
            if problem is not None:
                problems.append(f"{name}: {problem}")
        except Exception as exc:  # noqa: BLE001 - the other job still runs; raised below
            get_run_logger().error("%s failed: %s", name, exc)
            failures.append(exc)
    pruned: dict[str, Any] | None = None
    try:
        pruned = prune_task(retention_days)
        get_run_logger().info("pruned from the outboxes: %s", pruned)
    except Exception as exc:  # noqa: BLE001 - raised below, after what the jobs did
        get_run_logger().error("pruning the outboxes failed: %s", exc)
        failures.append(exc)
    if failures:
        raise failures[0]
    out = {
        "job": "daily-cadence",
        "today": (today or date.today()).isoformat(),
        "jobs": jobs,
        "plan": _summed(j["plan"] for j in jobs.values()),
        "delivery": _summed(j["delivery"] for j in jobs.values()),
        "pruned": pruned,
    }
    if problems:  # like each job's own flow: Failed, named "Undelivered", the result kept
        return Failed(name=UNDELIVERED, message="; ".join(problems), data=out)
    return out


def _summed(parts: Any) -> dict[str, Any]:
    """The numbers of several jobs' plan (or delivery) results, added up."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = round(out.get(key, 0) + value, 3)
    return out


FLOWS = {
    "daily-cadence": daily_cadence,
    "execute-checkins": execute_checkins,
    "overdue-reminders": overdue_reminders,
    "escalations": escalations,
    "weekly-digest": weekly_digest,
    "recap-due": recap_due,
    "scheduled-starts": scheduled_starts,
}
