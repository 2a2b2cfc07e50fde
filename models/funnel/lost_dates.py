"""Records a file would take a date from: the store holds a lead's SQL date, or a deal's won
date, and the file's row of that record leaves it empty.

A CRM keeps a record's dates as its stages happen: a lead converted stays converted, a deal
won keeps its close date. The usual reason a row has lost one is that the file is an older
export than the one imported before it (a download from last week picked by mistake): its
import would take the shared numbers back, every lead and deal it names as it was then, and a
preview that only says "changed" would not tell. So the import counts them per file, with
examples naming the line, the file's column and the date the store holds, and says so
(:meth:`LostDates.sentence`); it does not refuse: the CRM may have cleared a date on purpose
(a deal reopened), and then the file is right.

Only a record's first row in the file is compared, with the store as it was before the
import; a later row of the same record is a repeat (:mod:`models.funnel.repeats`), not looked at
here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from models.words import day, listed, quoted

#: examples kept per file
SAMPLES = 3
#: the dates of a record that, once set, a CRM keeps. Not a rejection or a loss: a rejected
#: lead is recycled, a lost deal revived, and their dates (read from the status, as profiles
#: do) go as a matter of course
KEPT = {
    "lead": ("mql_at", "first_touch_at", "sql_at"),
    "deal": ("opportunity_at", "won_at"),
}


class LostColumn(BaseModel):
    column: str  # the file's column
    date: int  # the date the store holds (seconds since 1970, UTC)


class LostDate(BaseModel):
    """A record's row that is empty where the store holds a date: its first such column and
    date, and the others of the same row in ``also``."""

    key: str
    line: int
    column: str  # the file's column
    date: int  # the date the store holds (seconds since 1970, UTC)
    also: list[LostColumn] = []

    def words(self, done: bool) -> str:
        """E.g. "“L1” on line 2 has no 'Converted', where the store has 4 Mar 2024", or, of two
        dates, "... has no 'Converted' (the store has 4 Mar 2024) nor 'Touched' (2 Mar 2024)"."""
        has = "had" if done else "has"
        head = f"{quoted(self.key, 40)} on line {self.line:,} has no {self.column!r}"
        first = day(datetime.fromtimestamp(self.date, UTC))
        if not self.also:
            return f"{head}, where the store {has} {first}"
        more = " nor ".join(
            f"{c.column!r} ({day(datetime.fromtimestamp(c.date, UTC))})" for c in self.also
        )
        return f"{head} (the store {has} {first}) nor {more}"


class LostDates(BaseModel):
    """A file's records whose row is empty where the store holds a date."""

    leads: int = 0
    deals: int = 0
    examples: list[LostDate] = []

    def sentence(self, file: str, done: bool) -> str:
        """E.g. "deals.csv: 2 deals would lose a date the store holds (for example “D-7” on
        line 9 has no 'Close Date', where the store has 3 Nov 2026). An older export ..." """
        what = listed(
            f"{n:,} {kind if n == 1 else kind + 's'}"
            for n, kind in ((self.leads, "lead"), (self.deals, "deal"))
            if n
        )
        holds = "held" if done else "holds"
        some = "; or ".join(e.words(done) for e in self.examples)
        lose = "lost" if done else "would lose"
        head = f"{file}: {what} {lose} a date the store {holds} (for example {some})."
        if done:
            return (
                f"{head} The numbers count them as not having reached those stages. If the "
                "file was an older export than the one imported before it, import the newer "
                "one again."
            )
        return (
            f"{head} An older export than the one imported last does this: if this is one, "
            "discard it. If the CRM cleared those dates, import it: the numbers will count "
            "those records as not having reached those stages."
        )


class LostDatesTally:
    """Counts one file's records whose row is empty where the stored row holds a date, for
    the writers of its tables (:class:`models.funnel.upsert._Target`)."""

    def __init__(self) -> None:
        self.counts = {"lead": 0, "deal": 0}
        self.examples: list[LostDate] = []

    @staticmethod
    def watch(record: str, columns: list[str]) -> list[int]:
        """The places of the dates to watch among a writer's ``columns``."""
        return [i for i, c in enumerate(columns) if c in KEPT[record]]

    def add(self, record: str, key: str, line: int, dates: list[tuple[str, int]]) -> None:
        """A record (``record``: "lead" or "deal") whose row, on ``line``, is empty in the
        file's columns where the store holds dates: ``dates``, (column, date) each."""
        self.counts[record] += 1
        if len(self.examples) < SAMPLES:
            (column, date), *others = dates
            also = [LostColumn(column=c, date=d) for c, d in others]
            self.examples.append(LostDate(key=key, line=line, column=column, date=date, also=also))

    def summary(self) -> LostDates | None:
        if not any(self.counts.values()):
            return None
        return LostDates(
            leads=self.counts["lead"], deals=self.counts["deal"], examples=self.examples
        )
