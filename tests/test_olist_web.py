"""The public Olist export (../shared/data/olist_marketing_funnel) previewed in the web app as
a sales lead would: the preview names each file's part in words ("Marketing qualified leads"),
never the profile's key, and counts what the CLI counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_olist import DEALS_FILE, MQL_FILE
from tests.test_web_import import Web, job_id_of, make_web, text


@pytest.fixture
def web(org, tmp_path: Path) -> Web:  # noqa: ANN001
    missing = [str(p) for p in (MQL_FILE, DEALS_FILE) if not p.is_file()]
    if missing:
        pytest.fail(
            "the Olist data set is missing: " + ", ".join(missing) + " (see "
            "shared/data/README.md beside the project)"
        )
    return make_web(org, tmp_path)


def test_the_olist_preview_names_its_files_in_words(web: Web) -> None:
    files = {MQL_FILE.name: MQL_FILE.read_bytes(), DEALS_FILE.name: DEALS_FILE.read_bytes()}
    resp = web.upload("lee", files, profile="olist")
    assert resp.status_code == 303, text(resp)[:500]
    web.wait("lee", job_id_of(resp))
    words = text(web.client("lee").get(resp.headers["location"]))
    assert "8,842 rows read" in words
    assert f"{MQL_FILE.name} Marketing qualified leads 8,000 8,000 0 0 0 0" in words
    assert f"{DEALS_FILE.name} Closed deals 842 842 0 0 0 798" in words
    assert "_qualified_" not in words.replace(MQL_FILE.name, "")
    assert "Closed_deals" not in words
