"""The demo's shared numbers: a HubSpot contacts export and a deals export, written as a real
portal writes them, for ``make demo`` and ``aligncycle serve --demo``.

The story the numbers tell: before the cycle, marketing's MQLs wait about a day and a half for a
first sales touch (barely half within the 24-hour hand-off SLA) and one in six becomes an SQL.
Eleven days into the cycle the teams agree the SLA and start the weekly digest; from then on a
rep touches most MQLs within hours, so the cycle's SLA attainment and hand-off latency move a
lot, while MQL→SQL moves only a little. The files are imported through the ``hubspot`` profile,
exactly as a user's own export would be, so the demo exercises the real import.

Deterministic: the same day 0 gives the same files.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from models.funnel.mapping import MappingSpec, load_profile

CONTACT_COLUMNS = [
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Create Date",
    "Original Source",
    "First Conversion",
    "Contact owner",
    "Became a Marketing Qualified Lead Date",
    "Date of first engagement",
    "Became a Sales Qualified Lead Date",
    "Lead Status",
    "Last Activity Date",
    "Rejection Reason",
]
DEAL_COLUMNS = [
    "Record ID",
    "Deal Name",
    "Associated Contact IDs",
    "Associated Company",
    "Deal Stage",
    "Create Date",
    "Close Date",
    "Amount",
    "Deal owner",
]
#: HubSpot's "Original Source" values, and how often each brings an MQL.
SOURCES = [
    ("Organic Search", 30),
    ("Paid Search", 22),
    ("Email Marketing", 12),
    ("Social Media", 14),
    ("Referrals", 8),
    ("Direct Traffic", 14),
]
CAMPAIGNS = {
    "Organic Search": ["Blog: hand-off guide", "Pricing page"],
    "Paid Search": ["Q1 search: CRM alignment", "Q1 search: lead routing"],
    "Email Marketing": ["Newsletter March", "Webinar invite"],
    "Social Media": ["LinkedIn: case study", "LinkedIn: webinar"],
    "Referrals": ["Partner referrals"],
    "Direct Traffic": ["Demo request form"],
}
#: The sales reps who own the leads (the demo organisation's sales people).
OWNERS = ["Lee Okafor", "Lena Berg", "Sid Patel", "Sue Novak"]
REASONS = ["Not a fit: too small", "No budget this year", "Wrong contact", "Student or job seeker"]
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Eva", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lia"]
LAST = ["Berg", "Costa", "Diaz", "Eriksen", "Fox", "Garcia", "Haas", "Ito", "Jensen", "Klein"]
COMPANIES = ["Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Hooli"]


@dataclass(frozen=True)
class Story:
    """The knobs of the demo's funnel: before the SLA is agreed, and after."""

    sla_day: int = 11  # the cycle's day on which the SLA is agreed and the digest starts
    mqls_per_day: float = 45.0
    latency_median_hours_before: float = 26.0
    latency_median_hours_after: float = 5.0
    untouched_before: float = 0.10
    untouched_after: float = 0.03
    sql_rate_before: float = 0.16
    sql_rate_after: float = 0.19
    rejection_rate: float = 0.08


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def hubspot_mapping() -> MappingSpec:
    """The hubspot profile as the demo company imports through it: its deals are in US
    dollars (what it chooses under Currency of the amounts), so its numbers say so."""
    return load_profile("hubspot").with_locale(amount_currency="USD")


def write_hubspot_exports(
    folder: Path,
    day0: date,
    *,
    start: date,
    end: date,
    story: Story | None = None,
    seed: int = 7,
) -> tuple[Path, Path]:
    """Write ``hubspot-contacts.csv`` and ``hubspot-deals.csv`` into ``folder``: the MQLs of
    ``start``..``end`` (inclusive) and their deals, the cycle starting on ``day0``. Returns the
    two paths."""
    story = story or Story()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    contacts_path = folder / "hubspot-contacts.csv"
    deals_path = folder / "hubspot-deals.csv"
    record = 100_000
    deal_id = 9_000_000
    sla_from = day0 + timedelta(days=story.sla_day)
    with (
        contacts_path.open("w", newline="", encoding="utf-8") as cf,
        deals_path.open("w", newline="", encoding="utf-8") as df,
    ):
        contacts = csv.writer(cf)
        deals = csv.writer(df)
        contacts.writerow(CONTACT_COLUMNS)
        deals.writerow(DEAL_COLUMNS)
        day = start
        while day <= end:
            after = day >= sla_from
            weekday = day.weekday() < 5
            count = _poisson(rng, story.mqls_per_day * (1.0 if weekday else 0.35))
            for _ in range(count):
                record += 1
                source = rng.choices([s for s, _ in SOURCES], [w for _, w in SOURCES])[0]
                created = datetime.combine(day, time(rng.randint(7, 19), rng.randint(0, 59)))
                mql = created + timedelta(minutes=rng.randint(5, 240))
                owner = rng.choice(OWNERS)
                untouched = rng.random() < (
                    story.untouched_after if after else story.untouched_before
                )
                median = (
                    story.latency_median_hours_after if after else story.latency_median_hours_before
                )
                touch = None
                if not untouched:
                    hours = median * math.exp(rng.gauss(0.0, 0.75))
                    touch = mql + timedelta(hours=hours)
                sql_rate = story.sql_rate_after if after else story.sql_rate_before
                sql = None
                status, last_activity, reason = "Open", touch or mql, ""
                if touch is not None and rng.random() < sql_rate:
                    sql = touch + timedelta(hours=rng.uniform(2, 96))
                    status, last_activity = "Connected", sql
                elif touch is not None and rng.random() < story.rejection_rate / (1 - sql_rate):
                    status = "Unqualified"
                    last_activity = touch + timedelta(hours=rng.uniform(1, 48))
                    reason = rng.choice(REASONS)
                first, last = rng.choice(FIRST), rng.choice(LAST)
                contacts.writerow(
                    [
                        record,
                        first,
                        last,
                        f"{first}.{last}.{record}@example.com".lower(),
                        _stamp(created),
                        source,
                        rng.choice(CAMPAIGNS[source]),
                        owner,
                        _stamp(mql),
                        _stamp(touch) if touch else "",
                        _stamp(sql) if sql else "",
                        status,
                        _stamp(last_activity),
                        reason,
                    ]
                )
                if sql is None:
                    continue
                company = rng.choice(COMPANIES)
                # Most SQLs open a deal; some contacts lose one deal and win a later one.
                opened = sql + timedelta(days=rng.uniform(1, 8))
                for attempt in range(2):
                    if rng.random() > (0.75 if attempt == 0 else 0.3):
                        break
                    deal_id += 1
                    closed = opened + timedelta(days=rng.uniform(8, 45))
                    roll = rng.random()
                    stage = "Closed Won" if roll < 0.38 else "Closed Lost" if roll < 0.78 else ""
                    if closed.date() > end + timedelta(days=7):
                        stage = ""
                    amount = round(rng.lognormvariate(math.log(12_000), 0.6), -1)
                    deals.writerow(
                        [
                            deal_id,
                            f"{company} — {first} {last}",
                            record,
                            company,
                            stage or rng.choice(["Qualified To Buy", "Presentation Scheduled"]),
                            _stamp(opened),
                            _stamp(closed) if stage else "",
                            f"{amount:.2f}",
                            owner,
                        ]
                    )
                    if stage != "Closed Lost":
                        break
                    opened = closed + timedelta(days=rng.uniform(3, 20))
            day += timedelta(days=1)
    return contacts_path, deals_path


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method; the means here are small)."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
