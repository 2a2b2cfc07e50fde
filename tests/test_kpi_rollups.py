"""The KPI rollups give exactly the numbers of the rows.

Property-based (hypothesis, a modest number of examples on small data): random leads and
deals of two sources (odd ones too: stages out of order, deals won and lost, no dates,
spellings that differ in case, deals with no lead), random windows (or none), groupings, as-of
times, SLAs and stall limits; every KPI of every group, with its sample, numerator, flags and
funnel, computed from the rollups equals the row-level computation. Then ordinary tests: a
re-import, a deal updated, a lead moved to another month, deletions, and the window and as-of
boundaries to the second, through the import itself.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from models.db import Store
from models.funnel.flags import recompute_flags
from models.funnel.importer import import_files
from models.funnel.kpis import compute_kpis
from models.funnel.links import refresh_links
from models.funnel.mapping import parse_mapping
from models.funnel.rollup_read import answers
from models.funnel.rollups import forget
from models.funnel.rollups import refresh as refresh_rollups
from models.funnel.tables import Deal, FunnelFlag, KpiLeadRollup, Lead

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SPAN = 100 * 86400  # the data's dates: 2024-01-01 .. 2024-04-10, to the second


def when(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


instant = st.integers(min_value=-5 * 86400, max_value=SPAN)
gap = st.integers(min_value=-2 * 86400, max_value=40 * 86400)
maybe = st.one_of  # readability
lead_st = st.fixed_dictionaries(
    {
        "channel": st.sampled_from([None, "paid", "Paid", "organic", "Émail"]),
        "campaign": st.sampled_from([None, "spring", "Spring"]),
        "owner": st.sampled_from([None, "ann", "bob"]),
        "team": st.sampled_from([None, "sales", "Sales"]),
        "mql": st.one_of(st.none(), instant),
        "touch": st.one_of(st.none(), gap),
        "sql": st.one_of(st.none(), gap),
        "rejected": st.one_of(st.none(), gap),
        "reason": st.sampled_from([None, "bad fit", "no budget"]),
    }
)
deal_st = st.fixed_dictionaries(
    {
        "lead": st.one_of(st.none(), st.integers(0, 11)),
        "owner": st.sampled_from([None, "ann", "cy"]),
        "team": st.sampled_from([None, "Sales", "partners"]),
        "opp": st.one_of(st.none(), instant),
        "won": st.one_of(st.none(), instant),
        "lost": st.one_of(st.none(), instant),
        "amount": st.one_of(st.none(), st.integers(-500, 90000)),
    }
)
MONTHS = [date(2023, 12, 1), *(date(2024, m, 1) for m in range(1, 6))]
start_st = st.one_of(
    st.none(), st.dates(date(2023, 12, 25), date(2024, 4, 15)), st.sampled_from(MONTHS)
)
end_st = st.one_of(
    st.none(),
    st.dates(date(2023, 12, 25), date(2024, 4, 15)),
    st.sampled_from(MONTHS).map(lambda d: d - timedelta(days=1)),  # a month's last day
)
query_st = st.fixed_dictionaries(
    {
        "start": start_st,
        "end": end_st,
        "by": st.sampled_from(
            [
                (),
                ("month",),
                ("channel",),
                ("campaign",),
                ("owner",),
                ("team",),
                ("owner", "month"),
                ("month", "channel"),
            ]
        ),
        "as_of": st.integers(0, SPAN + 40 * 86400).map(when),
        "sla_hours": st.sampled_from([0.5, 1, 24, 36.75]),
        "stall_days": st.sampled_from([1, 7, 30]),
        "source": st.sampled_from([None, "a"]),
    }
)


LEAD_COLUMNS = (
    "channel",
    "campaign",
    "owner",
    "team",
    "first_touch_at",
    "sql_at",
    "rejected_at",
    "rejection_reason",
)


def _load(s, leads: list[dict], deals: list[dict]) -> None:  # noqa: ANN001
    conn = s.connection()
    for t in (FunnelFlag, Deal, Lead):
        s.execute(delete(t))
    forget(s)
    # source "a" always has a lead (the queries may name it). Every row names every column: an
    # INSERT of many rows takes its columns from the first row (and dropped the others' values)
    lead_rows = [
        dict.fromkeys(LEAD_COLUMNS)
        | {"source": "a", "external_id": "base", "mql_at": when(SPAN // 2)}
    ]
    deal_rows = []
    for i, d in enumerate(leads):
        mql = d["mql"]

        def after(x: int | None, mql: int | None = mql) -> datetime | None:
            return None if x is None else when((mql or 0) + x)

        lead_rows.append(
            {
                "source": "a" if i % 3 else "b",
                "external_id": f"L{i}",
                "channel": d["channel"],
                "campaign": d["campaign"],
                "owner": d["owner"],
                "team": d["team"],
                "mql_at": None if mql is None else when(mql),
                "first_touch_at": after(d["touch"]),
                "sql_at": after(d["sql"]),
                "rejected_at": after(d["rejected"]),
                "rejection_reason": d["reason"],
            }
        )
    for j, d in enumerate(deals):
        lead = d["lead"] if d["lead"] is not None and d["lead"] < len(leads) else None
        deal_rows.append(
            {
                "source": "a" if lead is None or lead % 3 else "b",
                "external_id": f"D{j}",
                "lead_key": None if lead is None else f"L{lead}",
                "owner": d["owner"],
                "team": d["team"],
                "opportunity_at": None if d["opp"] is None else when(d["opp"]),
                "won_at": None if d["won"] is None else when(d["won"]),
                "lost_at": None if d["lost"] is None else when(d["lost"]),
                "amount_cents": d["amount"],
                "listed": j % 7 != 6,  # now and then a deal only a lead named
            }
        )
    if lead_rows:
        conn.execute(Lead.__table__.insert(), lead_rows)
    if deal_rows:
        conn.execute(Deal.__table__.insert(), deal_rows)
    for source in ("a", "b"):
        refresh_links(s, source)
        recompute_flags(s, source, None)
        refresh_rollups(s, source)


def _bounds(q: dict) -> tuple[int | None, int | None]:
    s = q.get("start")
    e = q.get("end")
    return (
        None if s is None else int(datetime(s.year, s.month, s.day, tzinfo=UTC).timestamp()),
        None
        if e is None
        else int(datetime(e.year, e.month, e.day, tzinfo=UTC).timestamp()) + 86400,
    )


def _expected(q: dict) -> bool:
    """The rollups answer overall, by month, channel or team over any window; by campaign or
    owner over whole months."""
    by = q.get("by")
    dims = (by,) if isinstance(by, str) else tuple(by or ())
    if not any(d in ("campaign", "owner") for d in dims):
        return True
    s, e = q.get("start"), q.get("end")
    return (s is None or s.day == 1) and (e is None or (e + timedelta(days=1)).day == 1)


def both_ways(s, **q) -> tuple[dict, dict]:  # noqa: ANN001, ANN003
    fast = compute_kpis(s, **q).model_dump()
    rows = compute_kpis(s, rollups=False, **q).model_dump()
    return fast, rows


@settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: keep the run short
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    leads=st.lists(lead_st, max_size=12),
    deals=st.lists(deal_st, max_size=10),
    queries=st.lists(query_st, min_size=1, max_size=4),
)
def test_rollups_equal_the_rows(store: Store, leads, deals, queries) -> None:  # noqa: ANN001
    with store.unit_of_work() as s:
        _load(s, leads, deals)
        for q in queries:
            if q["start"] and q["end"] and q["end"] < q["start"]:
                q["start"], q["end"] = q["end"], q["start"]
            assert answers(s.connection(), q["by"], q["source"], *_bounds(q)) == _expected(q)
            fast, rows = both_ways(s, **q)
            assert fast == rows, q


# --- through the import ------------------------------------------------------------------------

MAPPING = parse_mapping(
    """
name: t
source: crm
files:
  - name: leads
    fields:
      external_id: id
      channel: channel
      owner: owner
      mql_at: mql
      first_touch_at: touch
      sql_at: sql
  - name: deals
    fields:
      deal_id: deal
      lead_id: lead
      opportunity_at: created
      won_at: won
      lost_at: lost
      amount: amount
"""
)


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _import(store: Store, *paths: Path) -> None:
    with store.unit_of_work() as s:
        import_files(s, list(paths), MAPPING)


def _check(store: Store, **q) -> dict:  # noqa: ANN003
    """The rollups are used and agree with the rows; the rollups' numbers."""
    q.setdefault("as_of", datetime(2024, 5, 1, tzinfo=UTC))
    with store.unit_of_work() as s:
        by = q.get("by")
        dims = (by,) if isinstance(by, str) else tuple(by or ())
        assert answers(s.connection(), dims, q.get("source"), *_bounds(q)) == _expected(q)
        fast, rows = both_ways(s, **q)
    assert fast == rows
    return fast


LEADS = "id,channel,owner,mql,touch,sql"
DEALS = "deal,lead,created,won,lost,amount"


@pytest.fixture
def imported(store: Store, tmp_path: Path) -> tuple[Store, Path]:
    _import(store, *_write_pair(tmp_path))
    return store, tmp_path


def _write_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Four leads and four deals across three months (the rollups' edges)."""
    leads = _write(
        tmp_path / "leads.csv",
        LEADS,
        [
            "L1,paid,ann,2024-01-31 23:59:59,2024-02-01 10:00:00,2024-02-02 00:00:00",
            "L2,Paid,bob,2024-02-01 00:00:00,2024-02-01 00:30:00,",
            "L3,organic,ann,2024-02-15 12:00:00,,",
            "L4,organic,,2024-03-01 00:00:00,2024-03-01 23:00:00,2024-03-02 00:00:00",
        ],
    )
    deals = _write(
        tmp_path / "deals.csv",
        DEALS,
        [
            "D1,L1,2024-02-03 00:00:00,2024-02-29 23:59:59,,1000.00",
            "D2,L2,2024-02-05 00:00:00,,2024-03-01 00:00:00,",
            "D3,L4,2024-03-05 00:00:00,,,250.00",
            "D4,,,,,99.00",
        ],
    )
    return leads, deals


def test_the_import_keeps_rollups_and_they_answer(imported: tuple[Store, Path]) -> None:
    store, _ = imported
    with store.unit_of_work() as s:
        assert s.scalar(select(KpiLeadRollup.id).limit(1)) is not None
    feb = _check(store, start=date(2024, 2, 1), end=date(2024, 2, 29))
    k = feb["groups"][0]["kpis"]
    assert k["mql_volume"]["value"] == 2  # L2, L3; L1 is a second before February
    assert k["revenue_won"]["value"] == 1000.0  # D1, won a second before March
    assert k["open_pipeline_count"]["value"] == 1  # D4 (no creation date); D3 after the end
    for by in (None, "month", "channel", "owner", ["owner", "month"]):
        _check(store, start=date(2024, 1, 15), end=date(2024, 3, 10), by=by)
        _check(store, start=date(2024, 2, 1), end=date(2024, 3, 31), by=by)
        _check(store, by=by)


def test_as_of_boundaries_to_the_second(imported: tuple[Store, Path]) -> None:
    store, _ = imported
    # L3 untouched: due once its 24 h SLA deadline has passed, to the second
    deadline = datetime(2024, 2, 16, 12, tzinfo=UTC)
    feb = {"start": date(2024, 2, 1), "end": date(2024, 2, 29)}
    before = _check(store, as_of=deadline - timedelta(seconds=1), **feb)
    at = _check(store, as_of=deadline, **feb)
    due = [r["groups"][0]["kpis"]["sla_attainment"]["sample_size"] for r in (before, at)]
    assert due == [1, 2]  # L2 touched; L3 due from its deadline on
    # L4's latest progress is its open deal D3, created 2024-03-05 00:00: it stalls once the
    # 30-day cut-off is past that moment, to the second
    march = {"start": date(2024, 3, 1), "end": date(2024, 3, 31)}
    cut = datetime(2024, 4, 4, tzinfo=UTC)  # 2024-03-05 + 30 days
    counts = [
        _check(store, as_of=cut + timedelta(seconds=d), **march)["groups"][0]["kpis"][
            "stalled_leads"
        ]["value"]
        for d in (0, 1)
    ]
    assert counts == [0, 1]


def test_reimport_and_deal_updates_stay_exact(imported: tuple[Store, Path]) -> None:
    store, tmp = imported
    # the same files again: nothing changes
    _import(store, tmp / "leads.csv", tmp / "deals.csv")
    _check(store, by="month")
    # a deal updated: D2 is won in April instead of lost in March; D3 lost; D5 new
    deals = _write(
        tmp / "deals2.csv",
        DEALS,
        [
            "D2,L2,2024-02-05 00:00:00,2024-04-02 00:00:00,,500.00",
            "D3,L4,2024-03-05 00:00:00,,2024-03-20 00:00:00,250.00",
            "D5,L3,2024-02-20 00:00:00,,,10.00",
        ],
    )
    _import(store, deals)
    for by in (None, "month", "owner", ["month", "channel"]):
        _check(store, by=by)
        _check(store, start=date(2024, 3, 1), end=date(2024, 4, 30), by=by)
        _check(store, start=date(2024, 3, 2), end=date(2024, 4, 29), by=by)
    april = _check(store, start=date(2024, 4, 1), end=date(2024, 4, 30))["groups"][0]["kpis"]
    assert april["revenue_won"]["value"] == 500.0
    # a lead moved to another month and channel: its old and new months are refreshed
    leads = _write(
        tmp / "leads2.csv",
        LEADS,
        ["L1,email,cy,2024-03-10 08:00:00,2024-03-10 09:00:00,2024-03-11 00:00:00"],
    )
    _import(store, leads)
    for by in (None, "month", "channel", ["owner", "month"]):
        _check(store, by=by)
    jan = _check(store, start=date(2024, 1, 1), end=date(2024, 1, 31))
    assert jan["groups"] == [] or jan["groups"][0]["kpis"]["mql_volume"]["value"] == 0


def test_an_imported_deal_both_won_and_lost_counts_as_the_rows_say(
    imported: tuple[Store, Path],
) -> None:
    """The import tells the rollups whether the source has deals both won and lost (from the
    flags it has just computed): such a deal's loss and both its dates are summed up."""
    store, tmp = imported
    deals = _write(
        tmp / "deals2.csv",
        DEALS,
        ["D6,L3,2024-02-16 00:00:00,2024-03-04 00:00:00,2024-02-20 00:00:00,80.00"],
    )
    _import(store, deals)
    for by in (None, "month", "channel", ["owner", "month"]):
        _check(store, by=by)
        _check(store, start=date(2024, 2, 20), end=date(2024, 3, 4), by=by)
    # the deal is won again only: its loss is no longer counted
    _write(tmp / "deals2.csv", DEALS, ["D6,L3,2024-02-16 00:00:00,2024-03-04 00:00:00,,80.00"])
    _import(store, tmp / "deals2.csv")
    for by in (None, "month"):
        _check(store, by=by)


def test_two_groupings_of_people_and_channels_read_the_rows(
    imported: tuple[Store, Path],
) -> None:
    store, _ = imported
    with store.unit_of_work() as s:
        assert not answers(s.connection(), ("channel", "owner"), None)
        r = compute_kpis(s, by=["channel", "owner"])
        assert {g.group for g in r.groups} >= {"paid / ann", "Paid / bob"}


def test_a_source_written_otherwise_reads_the_rows(imported: tuple[Store, Path]) -> None:
    store, _ = imported
    with store.unit_of_work() as s:
        s.connection().execute(
            Lead.__table__.insert(),
            [{"source": "other", "external_id": "X", "mql_at": datetime(2024, 2, 2, tzinfo=UTC)}],
        )
        assert not answers(s.connection(), (), None)  # "other" has no rollups
        assert answers(s.connection(), (), "crm")
        r = compute_kpis(s, start=date(2024, 2, 1), end=date(2024, 2, 29))
        assert r.overall()["mql_volume"].value == 3


def test_the_cli_shows_the_rows_numbers(imported: tuple[Store, Path]) -> None:
    """``aligncycle kpi show`` goes through the same computation (the rollups here)."""
    from tests.test_kpis import run

    store, _ = imported
    res = run(
        "kpi", "show", "--from", "2024-02-01", "--to", "2024-03-31", "--by", "owner", "--json"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    with store.unit_of_work() as s:
        assert answers(
            s.connection(),
            ("owner",),
            None,
            *_bounds({"start": date(2024, 2, 1), "end": date(2024, 3, 31)}),
        )
        rows = compute_kpis(
            s,
            start=date(2024, 2, 1),
            end=date(2024, 3, 31),
            by="owner",
            as_of=datetime.fromisoformat(data["as_of"]),
            rollups=False,
        )
    assert data["groups"] == rows.model_dump(mode="json")["groups"]
    assert [g["group"] for g in data["groups"]][:2] == ["ann", "bob"]


def test_rollups_command_builds_them_for_a_store_written_otherwise(store: Store) -> None:
    """A store whose leads were written before the rollups existed reads the rows until
    ``aligncycle funnel rollups`` computes them; then the rollups answer, with the same
    numbers."""
    from tests.test_kpis import RECORDS, load, run

    load(store, RECORDS)
    with store.unit_of_work() as s:
        forget(s)
        assert not answers(s.connection(), (), None)
        before = compute_kpis(s, by="month", as_of=datetime(2024, 5, 1, tzinfo=UTC))
    res = run("funnel", "rollups")
    assert res.exit_code == 0, res.output
    assert "computed for t" in res.stdout
    with store.unit_of_work() as s:
        assert answers(s.connection(), (), None)
        after = compute_kpis(s, by="month", as_of=datetime(2024, 5, 1, tzinfo=UTC))
    assert after == before


DAY = 86400


def _many_groups() -> tuple[list[dict], list[dict]]:
    """600 leads: hundreds of owners and channels (in two casings), a free-text rejection
    reason per lead, MQLs in January 2024 and in 1969; deals on every other lead."""
    leads = [
        {
            "channel": f"Ch{i % 250}" if i % 2 else f"ch{i % 250}",
            "campaign": None,
            "owner": f"rep{i % 450}",
            "team": None,
            # most in January 2024, some in 1969 (negative epoch seconds)
            "mql": (i * 7919) % (20 * DAY) if i % 5 else -(55 * 365 * DAY) + i * 3600,
            "touch": None if i % 3 == 0 else (i % 11) * 3600,
            "sql": None if i % 4 else DAY,
            "rejected": 2 * DAY if i % 4 == 1 else None,
            "reason": f"reason number {i}",
        }
        for i in range(600)
    ]
    deals = [
        {
            "lead": i,
            "owner": None,
            "team": None,
            "opp": (i * 104729) % (30 * DAY),
            "won": (i * 7) % (40 * DAY) if i % 3 == 0 else None,
            "lost": (i * 13) % (40 * DAY) if i % 3 == 1 else None,
            "amount": 100 * i if i % 2 else None,
        }
        for i in range(0, 600, 2)
    ]
    return leads, deals


@pytest.mark.parametrize("dense", [65536, 0], ids=["counted", "sorted"])
def test_many_groups_free_text_reasons_and_dates_before_1970(
    store: Store, dense: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of owners and channels and a free-text rejection reason per lead, MQLs before
    1970 and in the same month: the rollups give the rows' numbers, whether their groups are
    numbered by counting or by sorting. (A window ending on 1969-12-31 ends at epoch second 0:
    the rows' open pipeline took that for no end and counted the deals opened in 2024.)"""
    monkeypatch.setattr("models.funnel.rollup_build.DENSE", dense)
    day = DAY
    leads, deals = _many_groups()
    got = {}
    with store.unit_of_work() as s:
        _load(s, leads, deals)
        for name, q in {
            "overall": {"by": None},
            "owner": {"by": ("owner",)},
            "channel x month": {"by": ("channel", "month")},
            "1969": {"by": ("month",), "start": date(1969, 1, 1), "end": date(1969, 12, 31)},
            "owner x month": {
                "by": ("owner", "month"),
                "start": date(2024, 1, 1),
                "end": date(2024, 1, 31),
            },
        }.items():
            q = {"source": "a", "as_of": when(50 * day), "sla_hours": 4, "stall_days": 3} | q
            assert answers(s.connection(), q["by"] or (), "a", *_bounds(q))
            fast, rows = both_ways(s, **q)
            assert fast == rows, name
            got[name] = fast
    # the 1969 window (it ends at epoch second 0): its two months, not the deals of 2024
    assert [g["group"] for g in got["1969"]["groups"]] == ["1969-01", "1969-02"]
    assert len(got["owner"]["groups"]) > 300


@pytest.mark.sqlite_only
@pytest.mark.parametrize("odd", ["the separator", "the NULL text", "none"])
def test_sqlite_reads_a_range_of_ids_joined_and_the_plain_way_when_unsure(
    store: Store, odd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the rows are read a range of ids at a time as one row of joined texts. A range
    holding a spelling that contains the separator, or is the text that stands for NULL,
    is read again the plain way: the rollups still give the rows' numbers, and that spelling
    is its own group, not cut in two nor taken for a missing value."""
    from models.funnel import rollup_build as rb

    monkeypatch.setattr(rb, "CHUNK", 16)
    outcomes: list[bool] = []
    split = rb._split

    def seen(*args):  # noqa: ANN002, ANN202
        got = split(*args)
        outcomes.append(got is not None)
        return got

    monkeypatch.setattr(rb, "_split", seen)
    leads, deals = _many_groups()
    spelling = {"the separator": "Web\x1fAds", "the NULL text": "\x1e", "none": None}[odd]
    if spelling is not None:
        for i in (3, 9, 303):  # source "a" (i % 3 != 0 is "b" in _load: these are "a"'s)
            leads[i + 1]["channel"] = spelling
            leads[i + 1]["reason"] = spelling
    with store.unit_of_work() as s:
        _load(s, leads, deals)
        for by in (None, ("channel",), ("channel", "month")):
            q = {"source": "a", "as_of": when(50 * DAY), "sla_hours": 4, "by": by}
            fast, rows = both_ways(s, **q)
            assert fast == rows, by
        if spelling is not None:
            groups = {g["group"] for g in fast["groups"]}
            assert any(spelling in str(g) for g in groups)
    assert any(outcomes)  # ranges read joined ...
    assert (not all(outcomes)) == (spelling is not None)  # ... and the odd ones again plainly


@pytest.mark.parametrize(
    "where",
    [
        "making the leads' rollups",
        "writing the leads' rollups",
        "reading the deals",
        "turning the deals read into records",
    ],
)
def test_a_failure_while_summing_up_leaves_no_thread_no_file_and_the_rollups_as_they_were(
    store: Store, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table's rollups are made in a thread of their own while the next table is read, and
    on SQLite the rows are read by a thread of their own while the last ones are turned into
    records. A failure in a thread reaches the caller as itself; a failure in the caller's own
    work stops the threads. Either way no thread and no temporary file is left, and once the
    unit of work rolls back the rollups are those from before."""
    import tempfile
    import threading
    import time

    from models.funnel import rollup_build as rb
    from models.funnel import rollups

    leads, deals = _many_groups()
    with store.unit_of_work() as s:
        _load(s, leads, deals)
    with store.unit_of_work() as s:
        before = s.execute(select(func.count()).select_from(KpiLeadRollup)).scalar_one()
        q = {"source": "a", "by": "month", "as_of": when(50 * DAY)}
        fast_before = compute_kpis(s, **q).model_dump()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if where == "making the leads' rollups":
        emit = rb._Build._emit

        def broken(self, *args):  # noqa: ANN001, ANN002, ANN202
            if not self.table.deals:
                raise OSError("No space left on device")
            return emit(self, *args)

        monkeypatch.setattr(rb._Build, "_emit", broken)
        error: type[BaseException] = OSError
    elif where == "reading the deals":
        calls = []
        for name in ("_joined", "_chunks", "_copied"):  # (SQLite's reads, PostgreSQL's)

            def failing(*args, _read=getattr(rb, name)):  # noqa: ANN002, ANN202
                calls.append(1)
                for i, chunk in enumerate(_read(*args)):
                    if len(calls) > 1 and i == 1:  # the deals' second chunk
                        raise OSError("disk I/O error")
                    yield chunk

            monkeypatch.setattr(rb, name, failing)
        monkeypatch.setattr(rb, "CHUNK", 8)
        error = OSError
    elif where == "turning the deals read into records":
        partition = rb._partition

        def interrupted(rec, spill):  # noqa: ANN001, ANN202
            if "kind" in rec.dtype.names:
                raise KeyboardInterrupt  # Ctrl-C while the deals are read
            return partition(rec, spill)

        monkeypatch.setattr(rb, "_partition", interrupted)
        monkeypatch.setattr(rb, "CHUNK", 8)
        error = KeyboardInterrupt
    else:
        rows = rb._Build.rows

        def slow(self, step):  # noqa: ANN001, ANN202
            while self.table.deals:  # the deals' rollups take their time: until stopped
                time.sleep(0.02)
                yield ("a row never written",)
            yield from rows(self, step)

        def broken_write(*args):  # noqa: ANN002, ANN202
            raise KeyboardInterrupt  # Ctrl-C while the deals' rollups are being made

        monkeypatch.setattr(rb._Build, "rows", slow)
        monkeypatch.setattr(rollups, "_write", broken_write)
        error = KeyboardInterrupt
    with pytest.raises(error), store.unit_of_work() as s:
        s.execute(delete(KpiLeadRollup))  # (it rolls back with the rest)
        refresh_rollups(s, "a")
    assert not [t for t in threading.enumerate() if t.name.startswith("aligncycle-rollups")]
    assert list(tmp_path.iterdir()) == []
    with store.unit_of_work() as s:
        assert s.execute(select(func.count()).select_from(KpiLeadRollup)).scalar_one() == before
        assert compute_kpis(s, **q).model_dump() == fast_before


def test_the_working_folders_of_a_killed_import_are_removed_by_the_next(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import killed while summing up leaves its working folder (its records on disk).
    The next import on the host removes it; a folder of a process still running, of another
    host, or not the rollups' is kept; the import leaves none of its own."""
    import os
    import socket
    import subprocess
    import sys
    import tempfile

    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    names = {
        "killed": f"aligncycle-rollups_{host}_{gone}_k1ll3d",
        "running": f"aligncycle-rollups_{host}_{os.getpid()}_runn1ng",
        "elsewhere": f"aligncycle-rollups_other-host.example_{gone}_3ls3",
        "not ours": f"something-else_{host}_{gone}_x",
    }
    for name in names.values():
        (work / name).mkdir()
        (work / name / "0").write_bytes(b"\0" * 4096)
    _import(store, *_write_pair(tmp_path))
    assert sorted(p.name for p in work.iterdir()) == sorted(
        names[k] for k in ("running", "elsewhere", "not ours")
    )


@pytest.mark.postgres
@pytest.mark.parametrize("fault", ["header", "shared hash", "unknown spelling"])
def test_a_binary_read_that_cannot_be_trusted_is_read_again_the_plain_way(
    store: Store, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads the rows for the rollups by a binary COPY, spellings as their hashes.
    When that read cannot be trusted (a COPY it does not recognise, two spellings with one
    hash, a spelling it was not told of, met after records were already spilled), the rows are
    read again the plain way, in the same transaction, and the rollups still give the rows'
    numbers; the progress told meanwhile never goes back."""
    from sqlalchemy import literal

    from models.funnel import rollup_build as rb

    plain = []
    chunks = rb._chunks
    monkeypatch.setattr(rb, "_chunks", lambda *a: plain.append(1) or chunks(*a))
    monkeypatch.setattr(rb, "CHUNK", 16)  # records spilled before the fault is met
    if fault == "header":
        monkeypatch.setattr(rb, "_COPY_HEADER", b"PGCOPY\n\xff\r\n\x00" + bytes(7) + b"\x01")
    elif fault == "shared hash":
        monkeypatch.setattr(rb, "_hash", lambda c: func.length(c) + literal(0))
    else:
        dictionary = rb._dictionary

        def forgetful(*args):  # noqa: ANN002, ANN202
            lookup = dictionary(*args)
            # a column with spellings loses its last (NULL, the smallest hash, stays first)
            i = max(i for i, (ordered, _code) in enumerate(lookup) if len(ordered) > 1)
            lookup[i] = (lookup[i][0][:-1], lookup[i][1][:-1])
            return lookup

        monkeypatch.setattr(rb, "_dictionary", forgetful)
    leads, deals = _many_groups()
    told: list[tuple[int, int]] = []
    with store.unit_of_work() as s:
        _load(s, leads, deals)
        assert plain  # the plain read ran
        plain.clear()
        refresh_rollups(s, "a", step=lambda done, of: told.append((done, of)))
        assert plain  # ... again, with the progress told
        for by in (None, ("owner",), ("channel", "month")):
            q = {"source": "a", "as_of": when(50 * DAY), "sla_hours": 4, "by": by}
            fast, rows = both_ways(s, **q)
            assert fast == rows, by
        assert len(fast["groups"]) > 100
    of = told[0][1]
    assert told[0] == (0, of) and told[-1] == (of, of)
    assert all(o == of for _d, o in told)
    assert [d for d, _o in told] == sorted(d for d, _o in told)
    assert len(told) > 400 // 16  # at least a step per chunk of the leads read


def test_a_source_that_records_no_first_touch_is_left_out_of_the_touch_kpis(
    store: Store,
) -> None:
    """Read with a source that records touches, a source that records none (its export has
    no such date) is left out of SLA attainment and the untouched leads, by the rollups as by
    the rows, overall and by group; its MQLs still count."""
    leads, deals = _many_groups()
    for i, lead in enumerate(leads):
        if i % 3 == 0:  # source "b" (see _load): no first touch on any of its leads
            lead["touch"] = None
    with store.unit_of_work() as s:
        _load(s, leads, deals)
        as_of = when(50 * DAY)
        for by in (None, ("owner",), ("channel", "month")):
            q = {"as_of": as_of, "sla_hours": 4, "by": by}
            fast, rows = both_ways(s, **q)
            assert fast == rows, by
        every = compute_kpis(s, as_of=as_of, sla_hours=4).groups[0].kpis
        a = compute_kpis(s, as_of=as_of, sla_hours=4, source="a").groups[0].kpis
        b = compute_kpis(s, as_of=as_of, sla_hours=4, source="b").groups[0].kpis
    assert every["mql_volume"].value == a["mql_volume"].value + b["mql_volume"].value
    for kpi in ("sla_attainment", "untouched_leads"):
        assert (every[kpi].value, every[kpi].sample_size) == (a[kpi].value, a[kpi].sample_size)
        assert b[kpi].value is None  # alone: no data
    assert every["untouched_leads"].value > 0


def test_the_touch_kpis_count_no_flag_of_a_source_they_leave_out(store: Store) -> None:
    """A flagged MQL of a source that records no first touch is not among the flagged records
    of SLA attainment and the untouched leads, which leave that source's leads out; the KPIs
    that count every MQL count it. The same by the rollups as by the rows, overall and by
    channel."""

    def lead(channel: str, mql: int, touch: int | None, sql: int | None = None) -> dict:
        blank = dict.fromkeys(("campaign", "owner", "team", "rejected", "reason"))
        return blank | {"channel": channel, "mql": mql, "touch": touch, "sql": sql}

    leads = [
        # L0, source "b" (see _load; its leads have no first touch): SQL two days before its
        # MQL, a flag
        lead("paid", 10 * DAY, None, sql=-2 * DAY),
        # L1, source "a": touched two days before its MQL, a flag
        lead("paid", 11 * DAY, -2 * DAY),
        lead("organic", 12 * DAY, 3600),  # L2, source "a": touched after an hour, no flag
    ]
    as_of = when(60 * DAY)
    with store.unit_of_work() as s:
        _load(s, leads, [])
        flagged = dict(s.execute(select(FunnelFlag.lead_key, FunnelFlag.source)).all())
        assert flagged == {"L0": "b", "L1": "a"}
        assert answers(s.connection(), (), None) and answers(s.connection(), ("channel",), None)
        for rollups in (True, False):
            report = compute_kpis(s, as_of=as_of, rollups=rollups)
            assert report.left_out_of_touch_kpis == ["b"]
            every = report.groups[0].kpis
            assert every["mql_volume"].flagged == 2, rollups  # L0 and L1
            assert every["stalled_leads"].flagged == 2, rollups
            assert every["sla_attainment"].flagged == 1, rollups  # L1 only
            assert every["untouched_leads"].flagged == 1, rollups
            # the latency's sample is touched MQLs: none of the source without touches
            assert every["handoff_latency_median_hours"].flagged == 1, rollups
            assert every["handoff_latency_p90_hours"].flagged == 1, rollups
            by_channel = compute_kpis(s, as_of=as_of, by="channel", rollups=rollups)
            paid = next(g.kpis for g in by_channel.groups if g.group == "paid")
            assert (paid["mql_volume"].flagged, paid["sla_attainment"].flagged) == (2, 1), rollups
            assert paid["untouched_leads"].flagged == 1, rollups
        for by in (None, ("channel",)):
            fast, rows = both_ways(s, as_of=as_of, by=by)
            assert fast == rows, by


@pytest.mark.postgres
def test_a_statement_failing_under_a_local_setting_raises_its_own_error(store: Store) -> None:
    """A setting raised for some statements (the staging's and the rollups' work_mem) is not
    set back after a failed one: the transaction is aborted, and setting it back there would
    raise "current transaction is aborted" instead of the error that says what went wrong."""
    from sqlalchemy.exc import DataError

    from models.db import local_setting

    with store.engine.connect() as conn, conn.begin():
        with local_setting(conn, "work_mem", "64MB"):
            assert conn.exec_driver_sql("SHOW work_mem").scalar() == "64MB"
        assert conn.exec_driver_sql("SHOW work_mem").scalar() != "64MB"  # set back
        with (
            pytest.raises(DataError, match="division by zero"),
            local_setting(conn, "work_mem", "64MB"),
        ):
            conn.exec_driver_sql("SELECT 1 / 0")


def test_migration_0029_keeps_every_stored_value_of_the_rollups(
    imported: tuple[Store, Path], database_url: str
) -> None:
    """A store whose rollups were written as plain integers (before 0029) reads the same
    numbers after the upgrade; the downgrade gives the plain integers back."""
    from migrations import runner
    from models.db import make_engine
    from models.funnel.distributions import unpack
    from models.funnel.tables import KpiDealRollup

    store, _ = imported
    cols = [KpiLeadRollup.latency, KpiLeadRollup.untouched_mql, KpiLeadRollup.progress]
    cols += [KpiDealRollup.times]

    def stored() -> list[list[bytes | None]]:
        with store.unit_of_work() as s:
            return [s.scalars(select(c).order_by(c.table.c.id)).all() for c in cols]

    before = stored()
    values = [[[d.smallest + v for v in d.excess] for d in map(unpack, c)] for c in before]
    assert any(v for column in values for v in column)  # (something to carry)
    numbers = _check(store, start=date(2024, 1, 15), end=date(2024, 3, 10), by="month")
    engine = make_engine(database_url)
    try:
        runner.downgrade(engine, "0028")
        plain = stored()
        assert [[list(np.frombuffer(b, "<i8")) if b else [] for b in c] for c in plain] == values
        runner.upgrade(engine)
    finally:
        runner.upgrade(engine)
        engine.dispose()
    assert stored() == before  # the same bytes as the import writes
    assert _check(store, start=date(2024, 1, 15), end=date(2024, 3, 10), by="month") == numbers
