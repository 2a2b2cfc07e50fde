"""How a deals file's stages were read: per stage, how many deals the numbers count as won, lost
or open. A CRM's pipeline names its stages as the company likes (HubSpot's "Contract signed",
Salesforce's "Closed Won - Renewal"); a profile knows the usual names only, and a deal at a
won stage it does not know would count as open for good, its revenue in the open pipeline and
none in the revenue won, with nothing to say so. The preview's table of stages shows it, and a
stage read as open whose name says closed, won or lost is pointed out, with the setting that
reads it right (*Stages a deal is won at* / *lost at*: ``won_stages`` / ``lost_stages``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from models.words import listed, quoted

#: distinct stages counted per file; the rest are counted together (a mapping reading another
#: column as the stage, a deal's name say, must not hold a million of them)
MAX_STAGES = 100
#: a stage whose name says the deal is closed (in English, German, French, Spanish, Portuguese)
_CLOSED = re.compile(
    r"\b(won|lost|closed|gewonnen|verloren|abgeschlossen|gagn[ée]e?|perdue?|ganad[oa]|"
    r"perdid[oa]|cerrad[oa]|ganh[oa]|fechad[oa])\b",
    re.IGNORECASE,
)


class StageRead(BaseModel):
    stage: str | None  # None: no stage; or, past MAX_STAGES, every other stage
    won: int = 0
    lost: int = 0
    open: int = 0
    first_open: int | None = None  # the line of its first deal read as open

    @property
    def deals(self) -> int:
        return self.won + self.lost + self.open


class Stages(BaseModel):
    """A deals file's stages as read, the most deals first."""

    rows: list[StageRead]
    more: bool = False  # past MAX_STAGES stages: the last row counts every other one
    #: the file's columns the won and lost dates are read from (None: not from a column)
    won_column: str | None = None
    lost_column: str | None = None

    def less(self, counted: StageCounts) -> Stages:
        """These stages without deals counted twice. The rows are counted as read, and a file
        that lists a deal on several rows (a report with a row per product) counts it once per
        row: the writer of the deals counts the row each repeat replaced
        (:class:`models.funnel.upsert._Target`), so a deal counts once, as its last row
        reads it."""
        rows = [r.model_copy() for r in self.rows]
        named = {r.stage: r for r in (rows[:-1] if self.more else rows)}
        for stage, (won, lost, open_, _line) in counted.counts.items():
            r = named.get(stage, rows[-1] if self.more else None)
            if r is not None:
                r.won, r.lost, r.open = (
                    max(0, r.won - won),
                    max(0, r.lost - lost),
                    max(0, r.open - open_),
                )
        more = self.more and rows[-1].deals > 0
        kept = sorted((r for r in named.values() if r.deals), key=_most_deals)
        return self.model_copy(update={"rows": [*kept, *rows[-1:]] if more else kept, "more": more})

    @property
    def named(self) -> list[StageRead]:
        """The rows of one stage each (not the row counting every other stage)."""
        return self.rows[:-1] if self.more else self.rows

    def looks_closed(self) -> list[StageRead]:
        """Stages whose deals are all read as open though the name says closed, won or lost."""
        return [
            r
            for r in self.named
            if r.stage and not r.won and not r.lost and _CLOSED.search(r.stage)
        ]

    def undated(self) -> list[StageRead]:
        """Stages whose deals are read as won (or lost) but for some, read as open: the stage is
        a won (lost) one, so those deals have no won (lost) date."""
        return [r for r in self.named if r.open and (r.won or r.lost)]

    def warnings(self, file: str) -> list[str]:
        """What a person should know of the file's stages: deals at a closing stage with no
        date, stages read as open whose names say closed."""
        out = []
        for r in self.undated():
            what = "won" if r.won >= r.lost else "lost"
            closed = r.won if what == "won" else r.lost
            column = self.won_column if what == "won" else self.lost_column
            date = f"{what} date" + (f" (column {column!r})" if column else "")
            have = "deal has" if r.open == 1 else "deals have"
            them = "it" if r.open == 1 else "them"
            rest = "one at that stage is" if closed == 1 else f"{closed:,} at that stage are"
            out.append(
                f"{file}: {r.open:,} {have} the stage {quoted(r.stage, 60)} but no {date}, the "
                f"first on line {r.first_open:,}, so the numbers count {them} as open; the "
                f"other {rest} {what}. Fill in the date in the CRM and export again."
            )
        said = self.warning(file)
        if said:
            out.append(said)
        return out

    def warning(self, file: str) -> str | None:
        """E.g. "deals.csv: 45 deals are at the stage “Closed Won - Renewal”, which is read as
        open: ..." (None: no stage looks so)."""
        odd = self.looks_closed()
        if not odd:
            return None
        deals = sum(r.deals for r in odd)
        shown = [quoted(r.stage, 60) for r in odd[:3]]
        if len(odd) > 3:
            shown.append(f"{len(odd) - 3} more")
        names = listed(shown)
        are = "deal is" if deals == 1 else "deals are"
        stage = "the stage" if len(odd) == 1 else "the stages"
        which = "which is" if len(odd) == 1 else "which are"
        those = "that stage closes a deal, name it"
        if len(odd) > 1:
            those = "those stages close a deal, name them"
        return (
            f"{file}: {deals:,} {are} at {stage} {names}, {which} read as open: the numbers "
            f"count such a deal in the open pipeline, never as won or lost. If {those} under "
            "Stages a deal is won at or lost at."
        )


class StageCounts:
    """Counts a deals file's kept deals per stage and as what they are read."""

    __slots__ = ("counts", "more")

    def __init__(self) -> None:
        self.counts: dict[str | None, list[int]] = {}
        self.more = False

    def add(self, stage: str | None, won: bool, lost: bool, line: int) -> None:
        c = self.counts.get(stage)
        if c is None:
            if len(self.counts) >= MAX_STAGES:
                self.more = True
                stage = "\x00"  # (every other stage)
                c = self.counts.get(stage)
            if c is None:
                c = self.counts[stage] = [0, 0, 0, 0]
        if won:
            c[0] += 1
        elif lost:
            c[1] += 1
        else:
            c[2] += 1
            if not c[3]:
                c[3] = line

    def summary(self, won_column: str | None, lost_column: str | None) -> Stages | None:
        if not self.counts:
            return None
        others = self.counts.pop("\x00", None)
        rows = sorted(
            (
                StageRead(stage=s, won=c[0], lost=c[1], open=c[2], first_open=c[3] or None)
                for s, c in self.counts.items()
            ),
            key=_most_deals,
        )
        if others is not None:
            won, lost, open_, first = others
            rows.append(StageRead(stage=None, won=won, lost=lost, open=open_, first_open=first))
        return Stages(
            rows=rows, more=others is not None, won_column=won_column, lost_column=lost_column
        )


def _most_deals(r: StageRead) -> tuple[int, str]:
    """The order of a file's stages: the most deals first, then by name."""
    return -r.deals, r.stage or ""
