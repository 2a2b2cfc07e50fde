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

    @property
    def deals(self) -> int:
        return self.won + self.lost + self.open


class Stages(BaseModel):
    """A deals file's stages as read, the most deals first."""

    rows: list[StageRead]
    more: bool = False  # past MAX_STAGES stages: the last row counts every other one

    def looks_closed(self) -> list[StageRead]:
        """Stages whose deals are all read as open though the name says closed, won or lost."""
        named = self.rows[:-1] if self.more else self.rows
        return [
            r for r in named if r.stage and not r.won and not r.lost and _CLOSED.search(r.stage)
        ]

    def warning(self, file: str) -> str | None:
        """E.g. "deals.csv: 45 deals are at the stage “Closed Won - Renewal”, which is read as
        open: ..." (None: no stage looks so)."""
        odd = self.looks_closed()
        if not odd:
            return None
        deals = sum(r.deals for r in odd)
        names = listed([quoted(r.stage, 60) for r in odd[:3]])
        if len(odd) > 3:
            names = f"{', '.join(quoted(r.stage, 60) for r in odd[:3])} and {len(odd) - 3} more"
        are = "deal is" if deals == 1 else "deals are"
        stage = "the stage" if len(odd) == 1 else "the stages"
        which = "which is" if len(odd) == 1 else "which are"
        those = (
            "that stage closes a deal, name it"
            if len(odd) == 1
            else ("those stages close a deal, name them")
        )
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

    def add(self, stage: str | None, won: bool, lost: bool) -> None:
        c = self.counts.get(stage)
        if c is None:
            if len(self.counts) >= MAX_STAGES:
                self.more = True
                stage = "\x00"  # (every other stage)
                c = self.counts.get(stage)
            if c is None:
                c = self.counts[stage] = [0, 0, 0]
        c[0 if won else 1 if lost else 2] += 1

    def summary(self) -> Stages | None:
        if not self.counts:
            return None
        others = self.counts.pop("\x00", None)
        rows = [
            StageRead(stage=s, won=c[0], lost=c[1], open=c[2])
            for s, c in sorted(self.counts.items(), key=lambda x: (-sum(x[1]), x[0] or ""))
        ]
        if others is not None:
            rows.append(StageRead(stage=None, won=others[0], lost=others[1], open=others[2]))
        return Stages(rows=rows, more=others is not None)
