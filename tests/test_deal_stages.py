"""A pipeline's own stage names: the preview shows how each stage of a deals file is read (won,
lost, open), points out a stage read as open whose name says it is closed, and the stages a
deal is won or lost at can be named on the import page, the command line and the API
(models.funnel.stages)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from models.db import Store
from models.errors import InvalidInput
from models.funnel.importer import import_files
from models.funnel.kpis import compute_kpis
from models.funnel.mapping import load_profile
from models.funnel.stages import MAX_STAGES, StageCounts
from tests.test_funnel_import import run
from tests.test_web_import import Web, job_id_of, make_web, text

HEADER = "Record ID,Deal Name,Deal Stage,Amount,Close Date,Create Date,Associated Contact IDs\n"
ROWS = [
    ("1", "Closed Won", "100"),
    ("2", "Contract signed", "200"),
    ("3", "Closed Won - Renewal", "50"),
    ("4", "Appointment scheduled", "70"),
    ("5", "Closed Lost", "30"),
    ("6", "Closed Won - Renewal", "20"),
]


def deals_csv(folder: Path) -> Path:
    path = folder / "deals.csv"
    lines = [f"{i},Deal {i},{stage},{amount},2024-03-10,2024-02-01,\n" for i, stage, amount in ROWS]
    path.write_text(HEADER + "".join(lines))
    return path


def revenue(store: Store) -> float | None:
    with store.unit_of_work() as s:
        report = compute_kpis(s, start=date(2024, 3, 1), end=date(2024, 3, 31))
    return report.overall()["revenue_won"].value


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_a_stage_read_as_open_whose_name_says_won_is_pointed_out(
    store: Store, tmp_path: Path, parallel: bool
) -> None:
    with store.unit_of_work() as s:
        summary = import_files(s, [deals_csv(tmp_path)], load_profile("hubspot"), parallel=parallel)
    stages = summary.files[0].stages
    assert stages is not None
    assert [(r.stage, r.won, r.lost, r.open) for r in stages.rows] == [
        ("Closed Won - Renewal", 0, 0, 2),
        ("Appointment scheduled", 0, 0, 1),
        ("Closed Lost", 0, 1, 0),
        ("Closed Won", 1, 0, 0),
        ("Contract signed", 0, 0, 1),
    ]
    assert stages.warning("deals.csv") == (
        "deals.csv: 2 deals are at the stage “Closed Won - Renewal”, which is read as open: the "
        "numbers count such a deal in the open pipeline, never as won or lost. If that stage "
        "closes a deal, name it under Stages a deal is won at or lost at."
    )
    assert revenue(store) == 100


def test_the_stages_a_deal_is_won_at_are_named_and_the_numbers_follow(
    store: Store, tmp_path: Path
) -> None:
    spec = load_profile("hubspot").with_locale(
        won_stages="Closed Won, Contract signed, closed won - renewal"
    )
    with store.unit_of_work() as s:
        summary = import_files(s, [deals_csv(tmp_path)], spec)
    stages = summary.files[0].stages
    assert stages is not None and stages.warning("deals.csv") is None
    assert {r.stage: r.won for r in stages.rows}["Contract signed"] == 1
    assert revenue(store) == 370  # (100 + 200 + 50 + 20)


def test_named_stages_need_a_mapping_that_reads_the_stage(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_profile("olist").with_locale(won_stages="won")
    assert str(refused.value) == (
        "--won-stages: the mapping reads the won date from a column of its own, not from the "
        "deal's stage, so it has no stages to replace"
    )
    out = run("funnel", "import", str(deals_csv(tmp_path)), "-p", "hubspot", "--preview")
    assert "If that stage closes a deal, name it with --won-stages or --lost-stages." in out.stdout
    named = run(
        "funnel",
        "import",
        str(deals_csv(tmp_path)),
        "-p",
        "hubspot",
        "--won-stages",
        "Closed Won,Closed Won - Renewal,Contract signed",
        "--json",
    )
    assert named.exit_code == 0
    assert '"won": 2' in named.stdout


def test_a_file_of_many_stages_counts_the_rest_together() -> None:
    counts = StageCounts()
    for i in range(MAX_STAGES + 20):
        counts.add(f"Closed stage {i}", False, False, i + 2)
    stages = counts.summary(None, None)
    assert stages is not None and stages.more
    assert len(stages.rows) == MAX_STAGES + 1
    assert (stages.rows[-1].stage, stages.rows[-1].open) == (None, 20)
    assert len(stages.looks_closed()) == MAX_STAGES  # (not the row of every other stage)


@pytest.fixture
def web(org: Store, tmp_path: Path) -> Web:
    return make_web(org, tmp_path)


def test_the_import_page_shows_the_stages_and_takes_the_setting(web: Web) -> None:
    body = deals_csv(web.tmp).read_bytes()
    resp = web.upload("lee", {"deals.csv": body}, profile="hubspot")
    assert resp.status_code == 303, text(resp)[:300]
    words = text(web.client("lee").get(resp.headers["location"]))
    assert "deals.csv: how its deal stages are read" in words
    assert "Closed Won - Renewal 2 open" in words and "Closed Won 1 won" in words
    assert (
        "deals.csv: 2 deals are at the stage “Closed Won - Renewal”, which is read as open" in words
    )
    job_id = job_id_of(resp)
    again = web.client("lee").post(
        f"/numbers/import/{job_id}/preview",
        data={
            "csrf": web.csrf("lee"),
            "profile": "hubspot",
            "won_stages": "Closed Won, Closed Won - Renewal",
        },
    )
    assert again.status_code == 303, text(again)[:300]
    words = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "Closed Won - Renewal 2 won" in words and "which is read as open" not in words
    assert "Stages a deal is won at: Closed Won, Closed Won - Renewal" in words
    api = web.api_upload("lee", {"deals.csv": body}, profile="olist", won_stages="Closed Won")
    assert api.status_code == 422
    assert api.json()["error"]["message"].startswith(
        "Stages a deal is won at: the mapping reads the won date from a column of its own"
    )


def test_deals_at_a_won_stage_without_a_date_are_pointed_out(store: Store, tmp_path: Path) -> None:
    """The stage is a won one (its other deals are won): the deal has no close date, so the
    numbers count it as open; the line and the column are named."""
    path = tmp_path / "deals.csv"
    path.write_text(
        HEADER
        + "1,A,Closed Won,100,2024-03-10,2024-02-01,\n"
        + "2,B,Closed Won,100,,2024-02-01,\n"
        + "3,C,Closed Won,100,,2024-02-01,\n"
    )
    with store.unit_of_work() as s:
        stages = import_files(s, [path], load_profile("hubspot")).files[0].stages
    assert stages is not None
    assert stages.warnings("deals.csv") == [
        "deals.csv: 2 deals have the stage “Closed Won” but no won date (column 'Close Date'), "
        "the first on line 3, so the numbers count them as open; the other one at that stage is "
        "won. Fill in the date in the CRM and export again."
    ]
