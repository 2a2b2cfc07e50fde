"""The verdict of a benchmark: one line per target, met or MISSED, and the exit status.

Every benchmark ends with ``return verdict([Target(...), ...]).report()``: it prints each
target with what was measured, the limit, and the floor the limit is stated against (measured
in the same run), then one summary line, and returns 0 when every target is met, 1 when one is
missed (also when a benchmark measured no target at all: nothing was judged), 2 when a
``--target`` override names no target of the run. ``Verdict.markdown()`` is the same verdict as
a table for ``bench/results/``.

Overrides: ``python -m bench NAME --target KEY=LIMIT`` (repeatable) replaces a target's limit
for that run, e.g. a tighter budget on a faster machine, or an impossible one to check that a
miss fails (``tests/test_bench.py``). ``bench/__main__.py`` takes the option off the command
line before the benchmark parses its own, so every benchmark has it.

Not a benchmark: it has no ``main``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TextIO

#: Limits given with ``--target KEY=LIMIT``, filled by ``bench/__main__.py``.
OVERRIDES: dict[str, float] = {}


@dataclass(frozen=True)
class Target:
    """One target of a benchmark run.

    ``value`` must be at most ``limit`` (times, ratios to a floor), or at least ``limit``
    with ``at_least=True`` (speed-ups). ``floor`` says, in words and figures, what the limit
    is measured against in the same run (e.g. "the 1,000-cycle planning, 0.31 s").
    ``reason`` says why a target could not be measured (e.g. "no answer within 30 s"): such a
    target is missed, with the reason in its verdict line, instead of ending the run.
    """

    key: str
    what: str
    value: float
    limit: float
    unit: str = "s"
    floor: str = ""
    at_least: bool = False
    reason: str = ""

    @property
    def met(self) -> bool:
        if self.reason or math.isnan(self.value):
            return False
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def _num(self, x: float) -> str:
        if self.unit == "x":
            return f"{x:.2f}x"
        if self.unit == "ms":
            return f"{x:.1f} ms"
        if self.unit == "s":
            return f"{x:.2f} s"
        return f"{x:g} {self.unit}".rstrip()

    @property
    def bound(self) -> str:
        return ("≥ " if self.at_least else "≤ ") + self._num(self.limit)

    @property
    def measured(self) -> str:
        if self.reason:
            return f"not measured: {self.reason}"
        return "not measured" if math.isnan(self.value) else self._num(self.value)


class UnknownTarget(ValueError):
    pass


def parse_override(text: str) -> tuple[str, float]:
    """``KEY=LIMIT`` → (key, limit); :class:`ValueError` with one line otherwise."""
    key, sep, value = text.partition("=")
    try:
        limit = float(value)
    except ValueError:
        limit = math.nan
    if not sep or not key.strip() or math.isnan(limit):
        raise ValueError(f"--target takes KEY=NUMBER (e.g. planning-ratio=12), not {text!r}")
    return key.strip(), limit


@dataclass
class Verdict:
    targets: list[Target]
    unknown: list[str]

    @property
    def missed(self) -> list[Target]:
        return [t for t in self.targets if not t.met]

    @property
    def exit_code(self) -> int:
        if self.unknown:
            return 2
        return 1 if (self.missed or not self.targets) else 0

    def lines(self) -> list[str]:
        out = []
        for t in self.targets:
            floor = f"; floor: {t.floor}" if t.floor else ""
            out.append(
                f"{'met   ' if t.met else 'MISSED'}  {t.key}: {t.what}: {t.measured} "
                f"(target {t.bound}{floor})"
            )
        if self.unknown:
            known = ", ".join(t.key for t in self.targets) or "none"
            unknown = ", ".join(self.unknown)
            out.append(f"error: no target {unknown} in this run (its targets: {known})")
        elif not self.targets:
            out.append("verdict: MISSED (the run measured no target)")
        elif self.missed:
            n, of = len(self.missed), len(self.targets)
            what = "the only target" if of == 1 else f"{n} of {of} targets"
            out.append(f"verdict: MISSED ({what} missed)")
        else:
            n = len(self.targets)
            out.append(f"verdict: met ({'the only target' if n == 1 else f'all {n} targets'})")
        return out

    def markdown(self) -> str:
        rows = [
            "| target | measured | limit | floor (same run) | verdict |",
            "|---|---:|---:|---|---|",
        ]
        for t in self.targets:
            rows.append(
                f"| {t.what} (`{t.key}`) | {t.measured} | {t.bound} | {t.floor or '–'} | "
                f"{'met' if t.met else '**MISSED**'} |"
            )
        summary = self.lines()[-1]
        return "\n".join([*rows, "", f"**{summary}**"]) + "\n"

    def report(self, out: TextIO | None = None) -> int:
        """Print the verdict; the benchmark's exit status."""
        stream = out or sys.stdout
        print("", file=stream)
        for line in self.lines():
            print(line, file=stream)
        stream.flush()
        return self.exit_code


def verdict(targets: Iterable[Target], overrides: Mapping[str, float] | None = None) -> Verdict:
    """The targets with their limits overridden (``--target``), ready to report."""
    given = dict(OVERRIDES if overrides is None else overrides)
    judged = []
    for t in targets:
        judged.append(replace(t, limit=given.pop(t.key)) if t.key in given else t)
    return Verdict(judged, sorted(given))
