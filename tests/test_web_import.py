"""Import in the browser and through the API: a lead or a manager uploads CSV exports, sees a
preview computed by the real import and rolled back (nothing written), confirms, follows the
progress of a large import from any worker, reads the same summary as the CLI's and downloads
the rejected rows; refusals keep what was chosen, uploads are bounded and removed, and nobody
else sees an import."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from aligncycle.web import create_app
from aligncycle.web import import_jobs as ij
from aligncycle.web.auth import SESSION_COOKIE
from aligncycle.web.deps import WebSettings
from models.accounts import ApiToken
from models.db import Store
from models.funnel import importer, jobs
from models.funnel.tables import Deal, FunnelImport, ImportJob, Lead
from models.services import accounts
from models.services.common import person_by_email
from models.tables import Cycle, Gap
from tests.conftest import db_snapshot
from tests.funnel_helpers import clear_funnel, funnel_content

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CONTACTS_HEADER = [
    "Record ID",
    "First Name",
    "Email",
    "Create Date",
    "Original Source",
    "Contact owner",
    "Became a Marketing Qualified Lead Date",
    "Became a Sales Qualified Lead Date",
    "Lead Status",
    "Last Activity Date",
    "Date of first engagement",
]
DEALS_HEADER = [
    "Record ID",
    "Deal Name",
    "Deal Stage",
    "Amount",
    "Close Date",
    "Create Date",
    "Deal owner",
    "Associated Contact IDs",
]


def csv_text(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # as HubSpot writes them
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def contact(
    rid: str, mql: str, *, sql: str = "", status: str = "OPEN", touch: str = "", name: str = "Ann"
) -> list[str]:
    return [
        rid,
        name,
        f"{name.lower()}{rid}@example.com",
        "2024-02-01 09:00",
        "Paid Search",
        "Sam Rep",
        mql,
        sql,
        status,
        "2024-02-20 16:00" if status == "Unqualified" else "",
        touch,
    ]


#: Four contacts as HubSpot exports them; line 4 has a date nobody can read, line 5 no id.
CONTACTS = csv_text(
    CONTACTS_HEADER,
    [
        contact("101", "2024-02-10 10:00", sql="2024-02-11 08:00", touch="2024-02-10 12:30"),
        contact("102", "2024-02-12 10:00", status="Unqualified", touch="2024-02-13 09:00"),
        contact("103", "yesterday", name="Cy"),
        contact("", "2024-02-14 10:00", name="Dee"),
    ],
)
#: Deals: 9001 lists two contacts (flagged: it counts for the first), 9002 was won before it
#: was created (flagged), 9003's amount cannot be read with a decimal point.
DEALS = csv_text(
    DEALS_HEADER,
    [
        ["9001", "Ann's", "Closed Won", "12,500.00", "2024-03-20", "2024-02-15", "Sam", "101;555"],
        ["9002", "Odd", "Closed Won", "300", "2024-02-01", "2024-02-20", "Sam", "102"],
        ["9003", "Euro", "Closed Lost", "12.000,00", "2024-03-21", "2024-02-16", "Sam", ""],
    ],
)  # fmt: skip


def text(resp: Any) -> str:
    """A page's words, without its markup."""
    html = re.sub(r"</?(a|strong|span|code|em)\b[^>]*>", "", resp.text)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


@dataclass
class Web:
    app: Any
    store: Store
    tmp: Path
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # who -> (cookie, csrf)
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None) -> TestClient:
        c = TestClient(self.app, follow_redirects=False)
        if who is not None:
            c.cookies.set(SESSION_COOKIE, self.cookies[who][0])
        return c

    def csrf(self, who: str) -> str:
        return self.cookies[who][1]

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def upload(self, who: str, files: dict[str, bytes], **form: str) -> Any:
        data = {"csrf": self.csrf(who), **form}
        parts = [("files", (name, body, "text/csv")) for name, body in files.items()]
        return self.client(who).post("/numbers/import", data=data, files=parts)

    def upload_mapping(
        self, who: str, files: dict[str, bytes], mapping: bytes, name: str = "my-crm.yaml"
    ) -> Any:
        """Upload ``files`` with a mapping of one's own."""
        parts = [("files", (n, body, "text/csv")) for n, body in files.items()]
        return self.client(who).post(
            "/numbers/import",
            data={"csrf": self.csrf(who), "profile": "own"},
            files=[*parts, ("mapping", (name, mapping, "application/yaml"))],
        )

    def api_upload(self, who: str, files: dict[str, bytes], **form: str) -> Any:
        parts = [("files", (name, body, "text/csv")) for name, body in files.items()]
        return self.client().post(
            "/api/v1/imports", data=form, files=parts, headers=self.bearer(who)
        )

    def job(self, who: str, job_id: int) -> dict[str, Any]:
        resp = self.client().get(f"/api/v1/imports/{job_id}", headers=self.bearer(who))
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait(self, who: str, job_id: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.job(who, job_id)
            if got["state"] not in jobs.RUNNING:
                return got
            assert time.monotonic() < deadline, got
            time.sleep(0.05)

    def set(self, **values: Any) -> None:
        self.app.state.import_settings = ij.ImportSettings(**values)


PEOPLE = {
    "lee": "lee@acme.test",  # sales lead
    "lou": "lou@acme.test",  # marketing lead
    "max": "max@acme.test",  # manager
    "sam": "sam@acme.test",  # sales point person
    "sid": "sid@acme.test",  # sales member
}


def make_web(store: Store, tmp: Path) -> Web:
    app = create_app(store, WebSettings(data_dir=tmp / "data", secret_key="imports"))
    web = Web(app, store, tmp)
    with store.unit_of_work() as s:
        for who, email in PEOPLE.items():
            person = person_by_email(s, email)
            raw, ws = accounts.create_session(s, person)
            web.cookies[who] = (raw, ws.csrf_token)
            web.tokens[who], _ = accounts.create_token(s, person, "tests")
        # used just now: no request writes their last use (snapshots stay equal)
        s.execute(update(ApiToken).values(last_used_at=datetime.now(UTC)))
    return web


@pytest.fixture
def web(org: Store, tmp_path: Path) -> Web:
    return make_web(org, tmp_path)


def job_id_of(resp: Any) -> int:
    return int(resp.headers["location"].rsplit("/", 1)[1])


def funnel_rows(store: Store) -> tuple[int, int, int]:
    with store.unit_of_work() as s:
        return (
            s.scalar(select(func.count()).select_from(Lead)),
            s.scalar(select(func.count()).select_from(Deal)),
            s.scalar(select(func.count()).select_from(FunnelImport)),
        )


def files_under(folder: Path) -> dict[str, float]:
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def without_jobs(snapshot: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in snapshot.items() if k != "import_jobs"}


# --- the preview --------------------------------------------------------------------------


def test_a_preview_shows_what_the_import_would_do_and_writes_nothing(web: Web) -> None:
    before = db_snapshot(web.store)
    rejects = files_under(ij.rejects_root(web.app))
    resp = web.upload("lee", {"contacts.csv": CONTACTS, "deals.csv": DEALS}, profile="hubspot")
    assert resp.status_code == 303, text(resp)[:500]
    page = web.client("lee").get(resp.headers["location"])
    assert page.status_code == 200
    words = text(page)
    # nothing written: no lead, deal, flag, import or audit event; no rejects file on disk
    assert without_jobs(db_snapshot(web.store)) == without_jobs(before)
    assert files_under(ij.rejects_root(web.app)) == rejects
    assert "Ready to import" in words and "Nothing has been written yet" in words
    # per file, the CLI's counts
    assert "contacts.csv Contacts 4 2 0 0 2 0" in words
    assert "deals.csv Deals 3 2 0 0 1 3" in words
    # the rejected rows: line and reason, with the file's column (not the mapping's field)
    assert (
        "4 column 'Became a Marketing Qualified Lead Date': cannot read 'yesterday' as a date"
        in words
    )
    assert "5 missing id (column 'Record ID')" in words
    assert "amount:" not in words and "mql_at" not in words
    assert "4 column 'Amount': '12.000,00' has ',' after '.': is ',' its decimal?" in words
    assert "choose the Decimal and Thousands separators the file uses" in words
    # the flags, with file and line
    assert "Several leads: 1 record" in words
    assert "deals.csv, line 2: Deal 9001 lists 2 leads; it counts for the first, 101" in words
    assert (
        "Stages out of the usual order: 2 records deals.csv, line 3: Deal 9002: the win is 19 "
        "days before its creation."
    ) in words
    # the first rows as they would be stored
    assert "Line Lead Channel Owner Team Created MQL First touch SQL Rejected" in words
    assert "2 101 paid search Sam Rep sales 2024-02-01 09:00 2024-02-10 10:00" in words
    assert "2 9001 101 Closed Won Sam sales 2024-02-15 00:00 2024-03-20 00:00 12,500.00" in words
    assert "--" not in words  # no command-line option anywhere


def test_confirm_imports_what_the_preview_showed_with_the_cli_s_numbers(
    web: Web, tmp_path: Path
) -> None:
    from tests.test_funnel_import import run

    resp = web.upload("lee", {"contacts.csv": CONTACTS, "deals.csv": DEALS}, profile="hubspot")
    job_id = job_id_of(resp)
    preview = web.job("lee", job_id)["preview"]["summary"]
    done = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/numbers/import/{job_id}"
    page = web.client("lee").get(done.headers["location"])
    words = text(page)
    assert "Imported" in words and "What was imported" in words
    summary = web.job("lee", job_id)["summary"]
    counts = ("rows", "new", "changed", "unchanged", "rejected", "flagged", "skipped")
    assert [[f[k] for k in counts] for f in summary["files"]] == [
        [f[k] for k in counts] for f in preview["files"]
    ]
    assert funnel_rows(web.store) == (2, 2, 1)  # contacts 101 and 102, deals 9001 and 9002
    web_store = funnel_content(web.store)
    # the same files through the CLI, into an emptied store: the same summary, the same store
    clear_funnel(web.store)
    for name, body in (("contacts.csv", CONTACTS), ("deals.csv", DEALS)):
        (tmp_path / name).write_bytes(body)
    out = run(
        "funnel",
        "import",
        str(tmp_path / "contacts.csv"),
        str(tmp_path / "deals.csv"),
        "-p",
        "hubspot",
        "--rejects-dir",
        str(tmp_path / "cli-rejects"),
        "--json",
    )
    assert out.exit_code == 0, out.output
    cli = json.loads(out.stdout)
    assert [[f[k] for k in counts] for f in cli["files"]] == [
        [f[k] for k in counts] for f in summary["files"]
    ]
    assert (cli["flags"], cli["flags_by_kind"]) == (summary["flags"], summary["flags_by_kind"])
    assert [(r["line"], r["reason"]) for r in cli["files"][0]["first_rejects"]] == [
        (4, "mql_at: cannot read 'yesterday' as a date"),
        (5, "missing id (column 'Record ID')"),
    ]  # the CLI's words; the web names the column instead of the field
    assert [(r["line"], r["reason"]) for r in summary["files"][0]["first_rejects"]] == [
        (4, "column 'Became a Marketing Qualified Lead Date': cannot read 'yesterday' as a date"),
        (5, "missing id (column 'Record ID')"),
    ]
    assert funnel_content(web.store) == web_store


def test_the_preview_s_rows_as_stored_are_this_file_s_not_an_earlier_file_s_of_its_name(
    web: Web,
) -> None:
    """A weekly export keeps its file's name: the records an earlier file of that name wrote
    (a lead it listed on line 2, the new one does not list) are not shown as this file's."""
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    done = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert done.status_code == 200
    later = csv_text(CONTACTS_HEADER, [contact("107", "2024-02-18 10:00", name="Eve")])
    words = text(
        web.client("lee").get(
            web.upload("lee", {"contacts.csv": later}, profile="hubspot").headers["location"]
        )
    )
    assert "2 107 paid search Sam Rep sales" in words
    assert "101" not in words and "102" not in words


def test_confirming_twice_imports_once(web: Web) -> None:
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    first = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert first.status_code == 200 and first.json()["state"] == "imported"
    again = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("max"))
    assert again.status_code == 409
    assert again.json()["error"]["message"] == (
        "these files are imported already; upload them again to import them again"
    )
    assert funnel_rows(web.store)[2] == 1


# --- refusals -----------------------------------------------------------------------------


AMBIGUOUS = csv_text(
    CONTACTS_HEADER,
    [
        contact("101", "04/03/2024 10:00", touch="04/03/2024 11:00"),
        contact("102", "05/03/2024 10:00"),
    ],
)


def test_a_refusal_names_the_setting_and_keeps_the_choices_and_the_files(web: Web) -> None:
    before = db_snapshot(web.store)
    resp = web.upload(
        "lee",
        {"leads.csv": AMBIGUOUS},
        profile="hubspot",
        timezone="Europe/Berlin",
        encoding="cp1252",
        decimal=",",
    )
    assert resp.status_code == 422
    words = text(resp)
    assert (
        "leads.csv: line 2, column 'Became a Marketing Qualified Lead Date': '04/03/2024 "
        "10:00' reads both day first and month first, and no date in the file tells which; "
        "choose Day first or Month first under How dates are written"
    ) in words
    assert "--dates" not in words and "in the mapping" not in words
    # what was chosen is kept, and so are the files
    assert 'value="Europe/Berlin"' in resp.text
    assert re.search(r'<option value="cp1252" selected>', resp.text)
    assert re.search(r'<option value="," selected>', resp.text)
    assert re.search(r'<option value="hubspot" selected>', resp.text)
    assert "leads.csv (" in words and "The uploaded files are kept" in words
    assert without_jobs(db_snapshot(web.store)) == without_jobs(before)
    # preview again with the order declared: the same files, no new upload
    job_id = int(re.search(r'action="/numbers/import/(\d+)/preview"', resp.text).group(1))
    again = web.client("lee").post(
        f"/numbers/import/{job_id}/preview",
        data={
            "csrf": web.csrf("lee"),
            "profile": "hubspot",
            "dates": "day-first",
            "timezone": "Europe/Berlin",
        },
    )
    assert again.status_code == 303, text(again)[:400]
    got = web.job("lee", job_id)
    assert got["state"] == "previewed"
    assert got["settings"] == {"dates": "day-first", "timezone": "Europe/Berlin"}
    leads = got["preview"]["files"][0]["leads"]
    # 4 March 2024 10:00 in Berlin is 09:00 UTC
    assert leads[0]["values"]["mql_at"] == "2024-03-04T09:00:00+00:00"


def test_the_api_refuses_with_the_same_sentence_and_names_the_import(web: Web) -> None:
    resp = web.api_upload("lou", {"leads.csv": AMBIGUOUS}, profile="hubspot")
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_input"
    assert "reads both day first and month first" in err["message"]
    assert "choose Day first or Month first under How dates are written" in err["message"]
    again = web.client().post(
        f"/api/v1/imports/{err['import_id']}/preview",
        json={"dates": "month-first"},
        headers=web.bearer("lou"),
    )
    assert again.status_code == 200, again.text
    assert again.json()["preview"]["files"][0]["leads"][0]["values"]["mql_at"].startswith(
        "2024-04-03"
    )


@pytest.mark.parametrize(
    ("files", "form", "field", "message"),
    [
        ({}, {"profile": "hubspot"}, "files", "choose at least one CSV file to import"),
        ({"a.csv": CONTACTS}, {}, "profile", "choose a profile, or upload your own mapping"),
        ({"a.csv": CONTACTS}, {"profile": "pipedrive"}, "profile", "there is no profile"),
        (
            {"a.csv": CONTACTS},
            {"profile": "hubspot", "timezone": "Mars/Olympus"},
            "timezone",
            "Time zone: unknown time zone 'Mars/Olympus' (use e.g. UTC or Europe/Berlin)",
        ),
        (
            {"a.csv": CONTACTS},
            {"profile": "hubspot", "decimal": ",", "thousands": ","},
            "thousands",
            "Thousands separator: it is also the decimal separator",
        ),
        (
            {"a.csv": CONTACTS},
            {"profile": "hubspot", "encoding": "rot13"},
            "encoding",
            "Encoding: choose one of the options in the list",
        ),
    ],
)
def test_a_form_refused_before_the_upload_is_kept_says_why_beside_the_field(
    web: Web, files: dict[str, bytes], form: dict[str, str], field: str, message: str
) -> None:
    before = db_snapshot(web.store)
    if files:
        resp = web.upload("max", files, **form)
    else:  # a browser sends an empty file part when no file was chosen
        resp = web.client("max").post(
            "/numbers/import",
            data={"csrf": web.csrf("max"), **form},
            files=[("files", ("", b"", "application/octet-stream"))],
        )
    assert resp.status_code == 422
    assert message in text(resp)
    assert f'id="up-{field}-err"' in resp.text
    for name, value in form.items():
        if name == "timezone":
            assert f'value="{value}"' in resp.text
    assert db_snapshot(web.store) == before
    assert not (ij.uploads_root(web.app)).exists() or not any(ij.uploads_root(web.app).iterdir())


def test_messages_name_the_page_s_settings_not_the_command_line_s(web: Web) -> None:
    latin = csv_text(CONTACTS_HEADER, [contact("1", "2024-02-10 10:00", name="Jürgen")])
    resp = web.upload("lee", {"latin.csv": latin.decode().encode("latin-1")}, profile="hubspot")
    assert resp.status_code == 422
    words = text(resp)
    assert "latin.csv: line 2: byte 0xfc is not UTF-8 text; choose the files' Encoding" in words
    assert "--encoding" not in words
    job_id = int(re.search(r"/numbers/import/(\d+)/preview", resp.text).group(1))
    fixed = web.client("lee").post(
        f"/numbers/import/{job_id}/preview",
        data={"csrf": web.csrf("lee"), "profile": "hubspot", "encoding": "latin-1"},
    )
    assert fixed.status_code == 303
    semi = CONTACTS.replace(b",", b";")
    resp = web.upload("lee", {"semi.csv": semi}, profile="hubspot")
    assert "the header looks separated by ';': choose that Column separator" in text(resp)


#: A mapping of one's own, its first fields (each test adds the others).
MY_CRM = b"name: my-crm\nsource: my-crm\nfields:\n  external_id: Lead\n  mql_at: MQL\n"


def test_a_mapping_of_your_own(web: Web) -> None:
    mapping = MY_CRM + b"  channel: Source\n"
    body = b"Lead,MQL,Source\nL1,2024-01-05,Webinar\nL2,2024-01-06,Ads\n"
    resp = web.upload_mapping("max", {"leads.csv": body}, mapping)
    assert resp.status_code == 303, text(resp)[:400]
    got = web.job("max", job_id_of(resp))
    assert (got["profile"], got["mapping"]) == (None, "my-crm.yaml")
    assert got["preview"]["summary"]["source"] == "my-crm"
    assert got["preview"]["summary"]["new"] == 2
    bad = mapping.replace(b"MQL\n", b"MQL date\n")
    wrong = web.upload_mapping("max", {"leads.csv": body}, bad, "bad.yaml")
    assert wrong.status_code == 422
    assert (
        "leads.csv: column 'MQL date' (the MQL date) is not in the file; its columns are: "
        "Lead, MQL, Source"
    ) in text(wrong)


def test_a_mapping_s_lookup_reads_an_uploaded_file_and_no_other(web: Web, tmp_path: Path) -> None:
    mapping = MY_CRM + b"  owner: Rep\n"
    mapping += b"  team: {column: Rep, lookup: {file: teams.csv, key: Rep, value: Region}}\n"
    body = b"Lead,MQL,Rep\nL1,2024-01-05,Ann\nL2,2024-01-06,Bob\n"
    teams = b"Rep,Region\nAnn,North\nBob,South\n"

    # the lookup file uploaded with the export is read for the lookup, not as records
    resp = web.upload_mapping("max", {"leads.csv": body, "teams.csv": teams}, mapping)
    assert resp.status_code == 303, text(resp)[:400]
    got = web.job("max", job_id_of(resp))
    assert got["preview"]["summary"]["new"] == 2
    assert [f["file"] for f in got["preview"]["summary"]["files"]] == ["leads.csv"]
    # a lookup naming a file of the server, or one not uploaded, is refused in one line
    secret = tmp_path / "secret.csv"
    secret.write_text("Rep,Region\nAnn,Moon\n")
    for file in (str(secret), "../files/teams.csv", "elsewhere.csv"):
        named = mapping.replace(b"file: teams.csv", f"file: {file}".encode())
        wrong = web.upload_mapping("max", {"leads.csv": body, "teams.csv": teams}, named)
        assert wrong.status_code == 422, file
        assert "which is not among the uploaded files: upload it with them" in text(wrong)
        assert "Moon" not in text(wrong) and str(tmp_path) not in text(wrong)
        with web.store.unit_of_work() as s:  # (an upload refused is kept, to read it again)
            assert s.scalar(select(func.count()).select_from(Lead)) == 0


# --- uploads: bounded, private, removed ---------------------------------------------------------


def test_an_upload_over_the_limit_is_refused_in_one_line_before_it_is_read(web: Web) -> None:
    web.set(max_upload_mb=0.5)
    big = csv_text(CONTACTS_HEADER, [contact(str(i), "2024-02-10 10:00") for i in range(10_000)])
    assert len(big) > 800_000
    before = db_snapshot(web.store)
    resp = web.upload("lee", {"big.csv": big}, profile="hubspot", timezone="Europe/Paris")
    assert resp.status_code == 413
    words = text(resp)
    assert re.search(r"the upload is \d{3} KB; at most 512 KB can be uploaded at once", words)
    assert "Upload files" in words and 'id="up-files-err"' in resp.text  # beside the files
    api = web.api_upload("lee", {"big.csv": big}, profile="hubspot")
    assert api.status_code == 413
    assert api.json()["error"]["code"] == "too_large"
    assert "at most 512 KB can be uploaded at once" in api.json()["error"]["message"]
    # between the limit and what a request may carry: refused once read, nothing kept
    middle = big[:600_000].rsplit(b"\r\n", 1)[0] + b"\r\n"
    resp = web.upload("lee", {"middle.csv": middle}, profile="hubspot")
    assert resp.status_code == 422
    assert re.search(r"these files are \d{3} KB; at most 512 KB can be uploaded", text(resp))
    assert db_snapshot(web.store) == before
    assert not ij.uploads_root(web.app).exists() or not any(ij.uploads_root(web.app).iterdir())
    # a mapping too big for the job's form: its page again, with the message
    job_id = job_id_of(web.upload("lee", {"c.csv": CONTACTS}, profile="hubspot"))
    resp = web.client("lee").post(
        f"/numbers/import/{job_id}/preview",
        data={"csrf": web.csrf("lee"), "profile": "own"},
        files=[("mapping", ("huge.yaml", big, "text/yaml"))],
    )
    assert resp.status_code == 413
    assert "at most 512 KB can be uploaded at once" in text(resp)
    assert "Import of c.csv" in text(resp) and web.job("lee", job_id)["state"] == "previewed"
    # the page says the limit, and checks it before sending (import.js)
    form = web.client("lee").get("/numbers/import").text
    assert 'data-max-bytes="524288"' in form and "at most 512 KB together" in text(
        web.client("lee").get("/numbers/import")
    )


def test_an_upload_without_its_size_is_refused(web: Web) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="profile"\r\n\r\nhubspot\r\n--x--\r\n'

    resp = web.client().post(
        "/api/v1/imports",
        content=chunks(),
        headers={**web.bearer("lee"), "content-type": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 411
    assert resp.json()["error"]["message"] == (
        "send the upload with its size (a Content-Length header)"
    )


def test_uploaded_files_live_under_the_data_dir_unreachable_and_leave_after_the_import(
    web: Web,
) -> None:
    resp = web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot")
    job_id = job_id_of(resp)
    with web.store.unit_of_work() as s:
        folder = s.get(ImportJob, job_id).folder
    kept = ij.uploads_root(web.app) / folder / "files" / "contacts.csv"
    assert kept.read_bytes() == CONTACTS
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert oct(kept.parent.parent.stat().st_mode & 0o777) == "0o700"
    # no page or answer names the folder, and no URL reaches it
    page = web.client("lee").get(f"/numbers/import/{job_id}").text
    api = json.dumps(web.job("lee", job_id))
    assert folder not in page and folder not in api and str(web.tmp) not in page + api
    for url in (f"/static/../imports/{folder}/files/contacts.csv", f"/imports/{folder}"):
        assert web.client("lee").get(url).status_code == 404
    web.client("lee").post(f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")})
    assert not kept.parent.parent.exists()
    # discarded: removed at once, nothing imported
    other = job_id_of(web.upload("lee", {"more.csv": CONTACTS}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        gone = ij.uploads_root(web.app) / s.get(ImportJob, other).folder
    assert gone.is_dir()
    out = web.client("lee").post(f"/numbers/import/{other}/discard", data={"csrf": web.csrf("lee")})
    assert out.status_code == 303 and not gone.exists()
    assert web.job("lee", other)["state"] == "discarded"
    assert funnel_rows(web.store)[2] == 1


def test_files_not_imported_are_removed_after_a_while(web: Web) -> None:
    web.set(keep_hours=1)
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        folder = ij.uploads_root(web.app) / job.folder
        job.updated_at = datetime.now(UTC) - timedelta(hours=2)
    stray = ij.uploads_root(web.app) / "left-by-a-stopped-process"
    stray.mkdir()
    old = time.time() - 3 * 3600
    import os

    os.utime(stray, (old, old))
    web.app.state.import_swept = -1e9
    assert web.client("lee").get("/numbers/import").status_code == 200  # sweeps
    assert not folder.exists() and not stray.exists()
    got = web.job("lee", job_id)
    assert got["state"] == "expired"
    page = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert "removed after a while without being imported; upload them again" in page
    confirm = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert confirm.status_code == 409


# --- progress, in the background, seen by every worker -------------------------------------------


def big_contacts(n: int) -> bytes:
    return csv_text(
        CONTACTS_HEADER,
        [contact(str(10_000 + i), f"2024-02-{1 + i % 28:02d} 10:00") for i in range(n)],
    )


def test_a_large_import_runs_in_the_background_with_progress_any_worker_reads(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    web.set(background_mb=0.1)
    # A second worker process: another app on the same store and data dir.
    other = make_web(web.store, web.tmp)
    reported = threading.Event()
    go_on = threading.Event()
    original = ij.ProgressFile.__call__

    def paused(self: ij.ProgressFile, name: str, done: int, total: int, rows: int) -> None:
        original(self, name, done, total, rows)
        if self.phase == jobs.IMPORTING and 0 < done < total and not go_on.is_set():
            reported.set()
            assert go_on.wait(60)  # hold the import here until the test has looked

    monkeypatch.setattr(ij.ProgressFile, "__call__", paused)
    # then held again part of the way through the work after the files (summing up the numbers)
    importing, summing, go_on_summing = threading.Event(), threading.Event(), threading.Event()
    share: list[int] = []
    refresh = importer.refresh_rollups

    def held(session: Any, source: str, months: Any, step: Any = None, **kw: Any) -> None:
        def told(done: int, of: int) -> None:
            if not (importing.is_set() and 0 < done < of and not share):
                return step(done, of)
            share.append(100 * done // of)
            time.sleep(0.3)  # past the progress file's throttle, so this step is the one written
            step(done, of)
            summing.set()
            assert go_on_summing.wait(60)

        refresh(session, source, months, step=told, **kw)

    monkeypatch.setattr(importer, "refresh_rollups", held)
    body = big_contacts(60_000)
    resp = web.upload("lee", {"contacts.csv": body}, profile="hubspot")
    assert resp.status_code == 303
    job_id = job_id_of(resp)
    assert web.wait("lee", job_id)["state"] == "previewed"
    importing.set()
    confirm = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert confirm.status_code == 303
    assert reported.wait(60)
    try:
        seen = other.job("max", job_id)
        assert seen["state"] == "importing"
        progress = seen["progress"]
        assert 0 < progress["percent"] < 100 and progress["rows"] == 20_000
        assert progress["bytes_total"] == len(body)
        assert "% of the files read (20,000 rows so far of contacts.csv)" in progress["text"]
        # the page without scripts shows the same; the polled block too
        page = other.client("max").get(f"/numbers/import/{job_id}")
        bar = re.search(r'<progress id="import-bar"[^>]* max="100" value="(\d+)"', page.text)
        assert bar and int(bar.group(1)) == progress["percent"]
        assert 'hx-get="/numbers/import/' in page.text and "htmx-2.0.11.min.js" in page.text
        block = other.client("max").get(
            f"/numbers/import/{job_id}/progress", headers={"HX-Request": "true"}
        )
        assert block.status_code == 200 and "HX-Refresh" not in block.headers
        assert f'value="{progress["percent"]}"' in block.text
        # nothing is in the store until the import commits
        assert funnel_rows(web.store) == (0, 0, 0)
        # the files read, the work after them is told step by step, in words
        go_on.set()
        assert summing.wait(60)
        seen = other.job("max", job_id)
        assert seen["state"] == "importing" and 0 < share[0] < 100
        said = seen["progress"]["text"]
        assert said == f"All 60,000 rows read. Summing up the numbers: {share[0]}% done."
        assert not re.search(r"[_{}]|\(s\)|summing_up|after_files", said)
        page = other.client("max").get(f"/numbers/import/{job_id}")
        assert said in text(page)
        bar = re.search(r'<progress id="import-step-bar"[^>]* max="100" value="(\d+)"', page.text)
        assert bar and int(bar.group(1)) == share[0]
        block = other.client("max").get(
            f"/numbers/import/{job_id}/progress", headers={"HX-Request": "true"}
        )
        assert block.status_code == 200 and said in text(block)
        assert funnel_rows(web.store) == (0, 0, 0)
    finally:
        go_on.set()
        go_on_summing.set()
        done = other.wait("max", job_id)  # also when a check failed: nothing left running
    assert done["state"] == "imported", done
    assert done["summary"]["new"] == 60_000 and done["progress"] is None
    block = other.client("max").get(
        f"/numbers/import/{job_id}/progress", headers={"HX-Request": "true"}
    )
    assert block.headers["HX-Refresh"] == "true"  # the page reloads to show the summary
    assert funnel_rows(web.store)[0] == 60_000


def test_the_import_says_it_is_saving_while_it_commits(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit of a big import takes seconds: the last step told is saving it, once the
    numbers are summed up and before anything is in the store, in the sentence the import's
    page shows."""
    web.set(background_mb=0.1)
    told: list[tuple[str, tuple[int, int, int], str]] = []
    original = ij.ProgressFile.after_files
    job_id = 0

    def seen(self: ij.ProgressFile, what: str, done: int, of: int) -> None:
        original(self, what, done, of)
        if self.phase == jobs.IMPORTING:  # what the page says now (the file just written)
            with web.store.unit_of_work() as s:
                shown = ij.progress_of(web.app, s.get(ImportJob, job_id))
            told.append((what, funnel_rows(web.store), shown.sentence if shown else ""))

    monkeypatch.setattr(ij.ProgressFile, "after_files", seen)
    job_id = job_id_of(web.upload("lee", {"contacts.csv": big_contacts(3_000)}, profile="hubspot"))
    assert web.wait("lee", job_id)["state"] == "previewed"
    confirm = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert confirm.status_code == 303
    assert web.wait("lee", job_id)["state"] == "imported"
    steps = [what for what, _rows, _page in told]
    assert steps[-1] == "saving the import"
    assert steps.index("summing up the numbers") < steps.index("saving the import")
    _what, rows, said = told[-1]
    assert rows == (0, 0, 0)  # told before the commit
    assert said == "All 3,000 rows read. Saving the import."
    assert funnel_rows(web.store)[0] == 3_000


def test_an_import_whose_process_stopped_says_so_and_can_be_confirmed_again(web: Web) -> None:
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        assert jobs.move(s, job_id, (jobs.PREVIEWED,), jobs.IMPORTING)
        folder = ij.uploads_root(web.app) / job.folder
    # the heartbeat of a process that stopped three minutes ago, a third of the way in
    beat = {"phase": "importing", "done": 100, "total": 300, "rows": 2, "at": time.time() - 180}
    (folder / "progress.json").write_text(json.dumps(beat))
    words = text(web.client("max").get(f"/numbers/import/{job_id}"))
    assert (
        "the import stopped before it finished (the server may have been restarted); nothing "
        "was imported: import them again"
    ) in words
    assert funnel_rows(web.store) == (0, 0, 0)
    again = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert again.status_code == 200 and again.json()["state"] == "imported"


def test_a_running_import_with_a_fresh_heartbeat_is_left_alone(web: Web) -> None:
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        job = s.get(ImportJob, job_id)
        assert jobs.move(s, job_id, (jobs.PREVIEWED,), jobs.IMPORTING)
        folder = ij.uploads_root(web.app) / job.folder
    (folder / "progress.json").write_text(
        json.dumps({"phase": "importing", "done": 150, "total": 300, "rows": 2, "at": time.time()})
    )
    got = web.job("max", job_id)
    assert got["state"] == "importing" and got["progress"]["percent"] == 50
    refused = web.client().delete(f"/api/v1/imports/{job_id}", headers=web.bearer("lee"))
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "this import is running; wait until it has finished"
    )


# --- the rejects file, and who sees an import ---------------------------------------------------


def test_the_rejects_file_is_served_by_import_id_to_leads_and_managers_only(web: Web) -> None:
    resp = web.api_upload("lee", {"contacts.csv": CONTACTS, "deals.csv": DEALS}, profile="hubspot")
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    assert resp.json()["preview"]["summary"]["files"][0]["rejects_url"] is None
    done = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    files = done.json()["summary"]["files"]
    assert [f["rejects_url"] for f in files] == [
        f"/api/v1/imports/{job_id}/rejects/1",
        f"/api/v1/imports/{job_id}/rejects/2",
    ]
    got = web.client().get(files[0]["rejects_url"], headers=web.bearer("max"))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert 'filename="contacts.rejects.csv"' in got.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0][:3] == ["line", "reason", "Record ID"]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("4", "mql_at: cannot read 'yesterday' as a date"),
        ("5", "missing id (column 'Record ID')"),
    ]
    page = web.client("lee").get(f"/numbers/import/{job_id}/rejects/2")
    assert page.status_code == 200 and "9003" in page.text
    # point persons and members: refused; another team's lead: as if there were no import
    for who, status in (("sam", 403), ("sid", 403), ("lou", 404)):
        assert web.client().get(files[0]["rejects_url"], headers=web.bearer(who)).status_code == (
            status
        )
        assert web.client(who).get(f"/numbers/import/{job_id}/rejects/1").status_code == status
    missing = web.client().get(f"/api/v1/imports/{job_id}/rejects/3", headers=web.bearer("lee"))
    assert missing.status_code == 404


def test_another_team_s_import_answers_exactly_like_a_missing_one(web: Web) -> None:
    """Lou (marketing lead) and Lee (sales lead): each sees the team's own imports; the
    manager sees both."""
    first = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    job_id, missing = 700_001, 999_999  # ids told apart from anything else in a page
    with web.store.unit_of_work() as s:
        s.execute(update(ImportJob).where(ImportJob.id == first).values(id=job_id))
    checks = [
        ("GET", "/api/v1/imports/{}", None),
        ("POST", "/api/v1/imports/{}/confirm", None),
        ("POST", "/api/v1/imports/{}/preview", {"dates": "iso"}),
        ("DELETE", "/api/v1/imports/{}", None),
        ("GET", "/api/v1/imports/{}/rejects/1", None),
        ("GET", "/numbers/import/{}", None),
        ("GET", "/numbers/import/{}/progress", None),
        ("POST", "/numbers/import/{}/confirm", {}),
        ("POST", "/numbers/import/{}/preview", {"profile": "hubspot"}),
        ("POST", "/numbers/import/{}/discard", {}),
        ("GET", "/numbers/import/{}/rejects/1", None),
    ]
    before = db_snapshot(web.store)
    for method, url, body in checks:
        answers = []
        for ident in (job_id, missing):
            path = url.format(ident)
            if path.startswith("/api/"):
                resp = web.client().request(method, path, json=body, headers=web.bearer("lou"))
            elif method == "GET":
                resp = web.client("lou").get(path)
            else:
                resp = web.client("lou").post(path, data={**body, "csrf": web.csrf("lou")})
            answers.append((resp.status_code, resp.text.replace(str(ident), "ID")))
        assert answers[0] == answers[1], (method, url, answers)
        assert answers[0][0] == 404
    assert db_snapshot(web.store) == before
    assert web.job("max", job_id)["state"] == "previewed"
    listed = web.client().get("/api/v1/imports", headers=web.bearer("lou")).json()
    assert listed["total"] == 0
    listed = web.client().get("/api/v1/imports", headers=web.bearer("max")).json()
    assert [j["id"] for j in listed["items"]] == [job_id]


def test_point_persons_and_members_cannot_import(web: Web) -> None:
    before = db_snapshot(web.store)
    for who in ("sam", "sid"):
        page = web.client(who).get("/numbers/import")
        assert page.status_code == 403
        assert "Importing funnel data is for leads and managers" in text(page)
        assert web.upload(who, {"c.csv": CONTACTS}, profile="hubspot").status_code == 403
        api = web.api_upload(who, {"c.csv": CONTACTS}, profile="hubspot")
        assert api.status_code == 403 and api.json()["error"]["code"] == "forbidden"
        nav = web.client(who).get("/my").text
        assert 'href="/numbers/import"' not in nav
    assert 'href="/numbers/import"' in web.client("lee").get("/my").text
    assert db_snapshot(web.store) == before
    assert not ij.uploads_root(web.app).exists() or not any(ij.uploads_root(web.app).iterdir())


# --- after an import: what the CLI does after one --------------------------------------------


def test_an_import_records_the_kpi_gaps_of_cycles_in_identify(web: Web) -> None:
    from tests.test_evidence import PLAYBOOK, load_playbook, start

    with web.store.unit_of_work() as s:
        load_playbook(s, PLAYBOOK)
        cycle_id = start(s).id  # March 2024; its baseline is February; no data yet
    rows = []
    for i in range(20):  # 20 MQLs in February: 10 touched after 2 h, 10 after 30 h; 8 rejected
        mql = datetime(2024, 2, 10, 9, i)
        touch = mql + timedelta(hours=2 if i < 10 else 30)
        decided = (touch + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
        rejected = i < 8
        row = contact(
            str(500 + i),
            mql.strftime("%Y-%m-%d %H:%M"),
            sql="" if rejected else decided,
            status="Unqualified" if rejected else "OPEN",
            touch=touch.strftime("%Y-%m-%d %H:%M"),
        )
        if rejected:
            row[9] = decided
        rows.append(row)
    feb = csv_text(CONTACTS_HEADER, rows)
    job_id = job_id_of(web.upload("lee", {"feb.csv": feb}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(Gap)) == 0  # the preview raised none
    web.client("lee").post(f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")})
    with web.store.unit_of_work() as s:
        keys = set(s.scalars(select(Gap.key).where(Gap.cycle_id == cycle_id)))
        title = s.get(Cycle, cycle_id).title
    assert keys == {"metric:sla_low", "checklist:rejections"}
    assert web.job("lee", job_id)["kpi_gaps"] == [{"cycle_id": cycle_id, "gaps": 2}]
    words = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert f"raised gaps in cycles in Identify: {title}: 2 gaps from the numbers" in words


# --- every import into the shared numbers ------------------------------------------------


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def imports_list(resp: Any) -> str:
    """The words of the import page's list of imports into the shared numbers."""
    assert resp.status_code == 200, resp.text[:300]
    return resp.text.split('id="imports"', 1)[1].split("</section>", 1)[0]


def cli_import(store: Store, tmp: Path, who: str, files: dict[str, bytes]) -> None:
    """An import as ``aligncycle funnel import --as`` runs it: import_files, no upload."""
    from models.funnel.importer import import_files
    from models.funnel.mapping import load_profile

    paths = []
    for name, body in files.items():
        (tmp / name).write_bytes(body)
        paths.append(tmp / name)
    with store.unit_of_work() as s:
        import_files(s, paths, load_profile("hubspot"), actor=person_by_email(s, PEOPLE[who]))


def test_every_import_into_the_numbers_is_listed_once_with_its_files_and_rows(
    web: Web, tmp_path: Path
) -> None:
    """Imports from the command line are listed beside those uploaded here, newest first, each
    once; the person's name and the upload's page only for the person's team and managers."""
    cli_import(web.store, tmp_path, "lee", {"contacts.csv": CONTACTS, "deals.csv": DEALS})
    job_id = job_id_of(web.upload("lee", {"later.csv": CONTACTS}, profile="hubspot"))
    waiting = text(web.client("lee").get("/numbers/import"))
    assert (
        "Uploads not imported yet" in waiting
        and "Lee Saleslead later.csv Ready to import 4" in waiting
    )
    done = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert done.status_code == 303
    lee_page = web.client("lee").get("/numbers/import")
    assert "Uploads not imported yet" not in lee_page.text  # imported: listed once, below
    listed = imports_list(lee_page)
    assert listed.count(f'href="/numbers/import/{job_id}"') == 1
    assert listed.count("later.csv") == 1
    words = text(lee_page)
    assert (  # (the same contacts under another file name: nothing changed)
        "later.csv 4 rows: 2 unchanged, 2 unreadable; 3 records with a data-quality flag "
        "Uploaded and previewed, by Lee Saleslead" in words
    )
    # the command line's import: its files and its rows in words (2 contacts and 2 deals new,
    # 3 rows unreadable, 3 records flagged)
    assert (
        "contacts.csv, deals.csv 7 rows: 4 new, 3 unreadable; 3 records with a data-quality flag "
        "From the command line, by Lee Saleslead" in words
    )
    assert words.index("later.csv") < words.index("contacts.csv, deals.csv")  # newest first
    assert "Nothing has been imported" not in words
    # the manager: the same, with the names and the upload's page
    listed = imports_list(web.client("max").get("/numbers/import"))
    assert listed.count("Lee Saleslead") == 2 and f'href="/numbers/import/{job_id}"' in listed
    # the other team's lead: when, what and how many, but not who nor the upload's page
    lou_page = web.client("lou").get("/numbers/import")
    listed = imports_list(lou_page)
    assert "contacts.csv, deals.csv" in listed and "later.csv" in listed
    assert "Lee" not in lou_page.text and f"/numbers/import/{job_id}" not in lou_page.text
    rows = [text_of(row).strip() for row in listed.split("<tr>")[2:]]
    assert [row.split(" hubspot ", 1)[1] for row in rows] == [
        "later.csv 4 rows: 2 unchanged, 2 unreadable; 3 records with a data-quality flag "
        "Uploaded and previewed",
        "contacts.csv, deals.csv 7 rows: 4 new, 3 unreadable; 3 records with a data-quality flag "
        "From the command line",
    ]
    # the Numbers page's last import leads there (for those who may import)
    numbers = web.client("lou").get("/numbers").text
    assert 'href="/numbers/import#imports"' in numbers
    member = web.client("sid").get("/numbers")
    assert "Last import:" in text(member) and "/numbers/import#imports" not in member.text
    # the API lists the same, with the same rule for names and uploads
    api = web.client().get("/api/v1/imports/history", headers=web.bearer("lee")).json()
    assert api["total"] == 2 and [i["files"] for i in api["items"]] == [
        ["later.csv"],
        ["contacts.csv", "deals.csv"],
    ]
    assert [(i["imported_by"], i["job_id"]) for i in api["items"]] == [
        ("Lee Saleslead", job_id),
        ("Lee Saleslead", None),
    ]
    other = web.client().get("/api/v1/imports/history", headers=web.bearer("lou")).json()
    assert [(i["imported_by"], i["job_id"], i["uploaded"]) for i in other["items"]] == [
        (None, None, True),
        (None, None, False),
    ]
    refused = web.client().get("/api/v1/imports/history", headers=web.bearer("sid"))
    assert refused.status_code == 403


def test_the_list_of_imports_is_paged_and_reaches_every_import(web: Web) -> None:
    with web.store.unit_of_work() as s:
        for i in range(1, 27):
            s.add(
                FunnelImport(
                    source="hubspot",
                    mapping="hubspot",
                    files=[f"export-{i:02}.csv"],
                    rows_read=i,
                    rows_new=i,
                    started_at=datetime(2026, 1, i, 9, 0),
                    finished_at=datetime(2026, 1, i, 9, 1),
                )
            )
    first = web.client("lee").get("/numbers/import")
    assert "Page 1 of 2 · 26 in all" in text(first)
    seen = re.findall(r"export-(\d\d)\.csv", imports_list(first))
    assert seen == [f"{i:02}" for i in range(26, 1, -1)]  # 25, newest first
    assert 'href="/numbers/import?page=2"' in first.text
    second = web.client("lee").get("/numbers/import?page=2")
    assert re.findall(r"export-(\d\d)\.csv", imports_list(second)) == ["01"]
    assert "1 row: 1 new From the command line" in text(second)
    assert "Uploads not imported yet" not in first.text


# --- the API ------------------------------------------------------------------------------


def test_the_api_imports_end_to_end_and_is_in_the_openapi_document(web: Web) -> None:
    resp = web.api_upload(
        "max", {"deals.csv": DEALS}, profile="hubspot", decimal=",", thousands="."
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/api/v1/imports/{job['id']}"
    assert job["state"] == "previewed" and job["settings"] == {"decimal": ",", "thousands": "."}
    deals = {d["values"]["external_id"]: d for d in job["preview"]["files"][0]["deals"]}
    assert deals["9003"]["values"]["amount_cents"] == 1_200_000  # 12.000,00
    # under a decimal comma, '12,500.00' is the one that cannot be read
    assert job["preview"]["summary"]["files"][0]["first_rejects"][0]["line"] == 2
    listed = web.client().get("/api/v1/imports", headers=web.bearer("lee")).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]  # the manager is on Lee's team
    confirmed = web.client().post(f"/api/v1/imports/{job['id']}/confirm", headers=web.bearer("lee"))
    assert confirmed.status_code == 200
    body = confirmed.json()
    assert body["state"] == "imported" and body["preview"] is None
    assert body["summary"]["new"] == 2 and body["summary"]["rejected"] == 1
    gone = web.client().delete(f"/api/v1/imports/{job['id']}", headers=web.bearer("lee"))
    assert gone.status_code == 409
    schema = web.client().get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path, methods in {
        "/api/v1/imports": {"get", "post"},
        "/api/v1/imports/{import_id}": {"get", "delete"},
        "/api/v1/imports/{import_id}/preview": {"post"},
        "/api/v1/imports/{import_id}/confirm": {"post"},
        "/api/v1/imports/{import_id}/rejects/{file_number}": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    upload = paths["/api/v1/imports"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "/numbers/import" not in paths


def test_dates_are_read_as_the_page_says(web: Web) -> None:
    """The time zone and the order of numeric dates, chosen on the page, are the import's."""
    body = csv_text(CONTACTS_HEADER, [contact("7", "25/12/2024 23:30")])
    resp = web.upload("lee", {"x.csv": body}, profile="hubspot", timezone="America/New_York")
    job = web.job("lee", job_id_of(resp))
    assert job["preview"]["files"][0]["leads"][0]["values"]["mql_at"] == (
        "2024-12-26T04:30:00+00:00"
    )
    assert job["preview"]["summary"]["files"][0]["dates"].startswith("day first (line 2")


def test_a_worker_without_the_uploaded_files_says_so(web: Web) -> None:
    """A confirm served by a web server that does not share the data folder the upload went
    to: refused in one line, nothing imported."""
    job_id = job_id_of(web.upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot"))
    with web.store.unit_of_work() as s:
        folder = ij.uploads_root(web.app) / s.get(ImportJob, job_id).folder
    elsewhere = folder.with_name("on-another-machine")
    folder.rename(elsewhere)
    resp = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert resp.status_code == 422
    assert resp.json()["error"]["message"] == ij.NOT_HERE
    assert funnel_rows(web.store) == (0, 0, 0)
    elsewhere.rename(folder)  # back on this machine: it can be imported now
    again = web.client().post(f"/api/v1/imports/{job_id}/confirm", headers=web.bearer("lee"))
    assert again.status_code == 200 and again.json()["state"] == "imported"


def test_a_preview_says_which_leads_no_kpi_will_count(web: Web) -> None:
    """Leads with no MQL date are imported, and the preview says they are in none of the
    shared numbers, and what would count them."""
    body = csv_text(
        CONTACTS_HEADER,
        [
            contact("101", "2024-02-10 10:00", touch="2024-02-10 12:30"),
            contact("102", "", name="Bo"),
            contact("103", "", name="Cy"),
        ],
    )
    resp = web.upload("lee", {"contacts.csv": body}, profile="hubspot")
    assert resp.status_code == 303, text(resp)[:500]
    words = text(web.client("lee").get(resp.headers["location"]))
    assert (
        "contacts.csv: 2 leads with no MQL date. The shared numbers count each lead from its MQL "
        "date, so they are in none of them."
    ) in words
    assert "The mapping reads no MQL date" not in words  # HubSpot's does: these never were MQLs
    assert "mql_at" not in words


def test_the_currency_of_the_amounts_is_chosen_on_the_page_and_kept_to(web: Web) -> None:
    """Plain amounts carry no currency: the page says so and offers the setting; chosen, the
    import records it; a later file of the same source in another is refused in the page's
    words, the store unchanged."""
    first = web.upload("lee", {"deals.csv": DEALS}, profile="hubspot")
    words = text(web.client("lee").get(f"/numbers/import/{job_id_of(first)}"))
    assert (
        "deals.csv: its amounts carry no currency. For the shared numbers to say which one they "
        "are in, choose it under Currency of the amounts." in words
    )
    page = web.client("lee").get("/numbers/import")
    assert re.search(r'<option value="EUR" *>Euros \(EUR\)</option>', page.text)
    euros = web.upload("lee", {"deals.csv": DEALS}, profile="hubspot", amount_currency="EUR")
    job_id = job_id_of(euros)
    words = text(web.client("lee").get(f"/numbers/import/{job_id}"))
    assert (
        "deals.csv: amounts in EUR." in words and "Currency of the amounts: Euros (EUR)." in words
    )
    done = web.client("lee").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("lee")}
    )
    assert done.status_code == 303
    before = funnel_rows(web.store)
    dollars = csv_text(
        DEALS_HEADER, [["9009", "New", "Closed Won", "$90", "2024-03-01", "", "Sam", ""]]
    )
    refused = web.upload("lee", {"more.csv": dollars}, profile="hubspot")
    assert refused.status_code == 422
    words = text(refused)
    assert "more.csv: its amounts are in USD but source “hubspot” holds amounts in EUR" in words
    assert "import them as another system (its name, when you match its columns)" in words
    assert "--" not in words.split("more.csv")[1][:400]
    assert funnel_rows(web.store) == before
    wrong = web.upload("lee", {"deals.csv": DEALS}, profile="hubspot", amount_currency="euro")
    assert wrong.status_code == 422
    assert "Currency of the amounts: choose one of the options in the list" in text(wrong)


@pytest.mark.parametrize("parallel", [False, True], ids=["one process", "second process"])
def test_values_a_lookup_file_does_not_list_are_counted_and_said(
    web: Web, tmp_path: Path, parallel: bool
) -> None:
    """A looked-up value the lookup file does not list leaves the field blank: the import
    says on how many rows, with examples, in the import's own process or its second."""
    from models.funnel.importer import import_files
    from models.funnel.mapping import parse_mapping

    mapping = MY_CRM + b"  owner: Rep\n"
    mapping += b"  team: {column: Rep, lookup: {file: teams.csv, key: Rep, value: Region}}\n"
    body = (
        b"Lead,MQL,Rep\nL1,2024-01-05,Ann\nL2,2024-01-06,Cy\nL3,2024-01-07,Dee\nL4,2024-01-08,Cy\n"
    )
    body += b"L5,yesterday,Zed\n"  # (unreadable: not imported, so its Rep counts for nothing)
    (tmp_path / "leads.csv").write_bytes(body)
    (tmp_path / "teams.csv").write_bytes(b"Rep,Region\nAnn,North\nBob,South\n")
    (tmp_path / "my-crm.yaml").write_bytes(mapping)
    spec = parse_mapping(mapping.decode())
    spec._folder = tmp_path
    with web.store.unit_of_work() as s:
        summary = import_files(s, [tmp_path / "leads.csv"], spec, parallel=parallel)
    said = [u.sentence("leads.csv") for u in summary.files[0].unmatched]
    assert said == [
        "leads.csv: 3 rows have a 'Rep' that teams.csv does not list (for example “Cy” and "
        "“Dee”): their team is left blank."
    ]
    if parallel:
        return
    resp = web.upload_mapping(
        "max", {"leads.csv": body, "teams.csv": b"Rep,Region\nAnn,North\n"}, mapping
    )
    words = text(web.client("max").get(resp.headers["location"]))
    assert "leads.csv: 3 rows have a 'Rep' that teams.csv does not list" in words
    api = web.job("max", job_id_of(resp))["preview"]["summary"]["files"][0]["unmatched"]
    assert [(u["field"], u["rows"], u["examples"]) for u in api] == [("team", 3, ["Cy", "Dee"])]


def test_rows_repeating_a_record_are_said_on_the_page_in_the_api_and_the_history(
    web: Web,
) -> None:
    """A lead listed twice in one file: the preview and the import say so in a sentence, the
    API counts it, and the imports' history says it beside the other counts."""
    mapping = MY_CRM + b"  channel: Source\n"
    body = b"Lead,MQL,Source\nL1,2024-01-05,Webinar\nL2,2024-01-06,Ads\nL1,2024-01-05,Ads\n"
    resp = web.upload_mapping("max", {"leads.csv": body}, mapping)
    assert resp.status_code == 303, text(resp)[:400]
    job_id = job_id_of(resp)
    words = text(web.client("max").get(resp.headers["location"]))
    assert (
        "3 rows read into the source “my-crm”: 2 new, 0 changed, 0 unchanged, 0 unreadable (they "
        "would not be imported), and 1 row listing a record that an earlier row of its file "
        "lists too." in words
    )
    assert (
        "leads.csv: 1 row lists a lead that an earlier row lists too, with other values (for "
        "example “L1” on line 4, whose 'Source' differs from line 2). Each lead is counted "
        "once; where the rows differ, the later one is kept." in words
    )
    api = web.job("max", job_id)["preview"]["summary"]
    assert (api["repeated"], api["files"][0]["repeated"], api["files"][0]["repeats"]["differ"]) == (
        1,
        1,
        1,
    )
    done = web.client("max").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("max")}
    )
    assert done.status_code == 303
    history = text(web.client("max").get("/numbers/import"))
    assert "3 rows: 2 new, 1 repeating a record listed earlier in its file" in history
    with web.store.unit_of_work() as s:
        lead = s.scalars(select(Lead).where(Lead.external_id == "L1")).one()
        assert (lead.channel, lead.line) == ("Ads", 4)


def test_the_whole_export_is_chosen_on_the_page_and_says_what_it_removes(web: Web) -> None:
    """Chosen, the preview says which records the import would remove, in a sentence; the
    import removes them and the history says so. The same choice through the API."""
    mapping = MY_CRM + b"  channel: Source\n"
    body = b"Lead,MQL,Source\nL1,2024-01-05,Webinar\nL2,2024-01-06,Ads\nL3,2024-01-07,Ads\n"
    first = web.upload_mapping("max", {"leads.csv": body}, mapping)
    web.client("max").post(
        f"/numbers/import/{job_id_of(first)}/confirm", data={"csrf": web.csrf("max")}
    )
    page = text(web.client("max").get("/numbers/import"))
    assert "These files hold" in page
    assert "The whole export: the source's records they do not list are removed" in page
    later = b"Lead,MQL,Source\nL1,2024-01-05,Webinar\n"
    parts = [("files", ("leads.csv", later, "text/csv")), ("mapping", ("m.yaml", mapping, "x"))]
    resp = web.client("max").post(
        "/numbers/import",
        data={"csrf": web.csrf("max"), "profile": "own", "whole_export": "yes"},
        files=parts,
    )
    assert resp.status_code == 303, text(resp)[:400]
    job_id = job_id_of(resp)
    words = text(web.client("max").get(resp.headers["location"]))
    assert (
        "2 of the 3 leads of the source “my-crm” are in none of these files: they would be "
        "removed (for example “L2” and “L3”)." in words
    )
    assert "These files hold: The whole export" in words
    assert funnel_rows(web.store)[0] == 3  # (a preview writes nothing)
    api = web.job("max", job_id)["preview"]["summary"]["removed"]
    assert api == [{"record": "lead", "rows": 2, "held": 3, "examples": ["L2", "L3"]}]
    done = web.client("max").post(
        f"/numbers/import/{job_id}/confirm", data={"csrf": web.csrf("max")}
    )
    assert done.status_code == 303
    words = text(web.client("max").get(f"/numbers/import/{job_id}"))
    assert "they were removed (for example “L2” and “L3”)" in words
    assert funnel_rows(web.store)[0] == 1
    history = text(web.client("max").get("/numbers/import"))
    assert "1 row: 1 unchanged, 2 records removed: the whole export did not list them" in history
    wrong = web.client("max").post(
        "/numbers/import",
        data={"csrf": web.csrf("max"), "profile": "own", "whole_export": "all"},
        files=parts,
    )
    assert wrong.status_code == 422
    assert "These files hold: choose one of the options in the list" in text(wrong)
    # the API: the same setting, the same answer
    first = web.api_upload("lee", {"contacts.csv": CONTACTS}, profile="hubspot")
    web.client().post(f"/api/v1/imports/{first.json()['id']}/confirm", headers=web.bearer("lee"))
    only = csv_text(CONTACTS_HEADER, [contact("101", "2024-02-10 10:00")])
    api = web.api_upload("lee", {"contacts.csv": only}, profile="hubspot", whole_export="true")
    assert api.status_code == 201, api.text
    removed = api.json()["preview"]["summary"]["removed"]
    assert removed == [{"record": "lead", "rows": 1, "held": 2, "examples": ["102"]}]


def test_an_id_excel_rounded_into_a_number_is_refused_with_its_row(web: Web) -> None:
    """A file saved from Excel writes long ids as "1.23457E+11": their last digits are gone,
    and the records would merge into one. Each such row is unreadable, saying why and what to
    do; the others are imported."""
    body = csv_text(
        CONTACTS_HEADER,
        [
            contact("1.23457E+11", "2024-02-10 10:00"),
            contact("1,23457E+11", "2024-02-11 10:00"),
            contact("101", "2024-02-12 10:00"),
        ],
    )
    resp = web.upload("lee", {"contacts.csv": body}, profile="hubspot")
    assert resp.status_code == 303, text(resp)[:300]
    words = text(web.client("lee").get(resp.headers["location"]))
    assert "3 rows read into the source “hubspot”: 1 new" in words
    assert (
        "column 'Record ID': '1.23457E+11' is an id Excel rounded into a number (its last digits "
        "are lost, so records would merge): export the file again, and do not save it from "
        "Excel (or format that column as text first)" in words
    )
    assert "'1,23457E+11' is an id Excel rounded" in words
