"""Server-side SVG charts: no JavaScript, no chart library, print-friendly.

Every chart is an ``<svg role="img">`` with a title and a text description (screen readers and
printouts get the numbers too). Labels are escaped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = {
    "blue": "#2563eb",
    "green": "#16a34a",
    "amber": "#d97706",
    "red": "#dc2626",
    "grey": "#9ca3af",
    "slate": "#475569",
    "teal": "#0d9488",
    "violet": "#7c3aed",
}
SERIES = ["blue", "teal", "violet", "amber"]
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""
_ids = itertools.count(1)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str = "blue"
    note: str = ""  # shown after the value, e.g. "of 12"


def _color(name: str) -> str:
    return PALETTE.get(name, name)


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{text}{unit}"


def _svg(width: int, height: int, title: str, desc: str, body: str) -> Markup:
    n = next(_ids)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-labelledby="chart-t{n} chart-d{n}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        f'<title id="chart-t{n}">{escape(title)}</title>'
        f'<desc id="chart-d{n}">{escape(desc)}</desc>{body}</svg>'
    )


def hbars(
    bars: Sequence[Bar], *, title: str, unit: str = "", max_value: float | None = None
) -> Markup:
    """Horizontal bars with their values, one row per bar."""
    width, label_w, row = 560, 170, 30
    plot_w = width - label_w - 70
    top = max([max_value or 0] + [b.value for b in bars]) or 1
    parts = []
    for i, b in enumerate(bars):
        y = i * row + 6
        w = max(0.0, plot_w * b.value / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="13" '
            f'fill="#1f2937">{escape(b.label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="20" rx="4" fill="#f1f5f9"/>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="20" rx="4" '
            f'fill="{_color(b.color)}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="13" font-weight="600" '
            f'fill="#111827">{escape(_fmt(b.value, unit))}'
            f"{escape(' ' + b.note) if b.note else ''}</text>"
        )
    desc = "; ".join(f"{b.label}: {_fmt(b.value, unit)} {b.note}".strip() for b in bars)
    return _svg(width, max(1, len(bars)) * row + 10, title, desc, "".join(parts))


def donut(bars: Sequence[Bar], *, title: str, center: str, caption: str = "") -> Markup:
    """A ring split by value, with a big number in the middle and a legend on the right."""
    import math

    size, r, stroke = 180, 62, 26
    cx = cy = size / 2
    total = sum(b.value for b in bars)
    circ = 2 * math.pi * r
    parts = [
        f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#f1f5f9" '
        f'stroke-width="{stroke}"/>'
    ]
    offset = 0.0
    for b in bars:
        if total <= 0 or b.value <= 0:
            continue
        length = circ * b.value / total
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="{_color(b.color)}" '
            f'stroke-width="{stroke}" stroke-dasharray="{length:.2f} {circ - length:.2f}" '
            f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {cx} {cy})"/>'
        )
        offset += length
    parts.append(
        f'<text x="{cx}" y="{cy + 4}" text-anchor="middle" font-size="30" font-weight="700" '
        f'fill="#111827">{escape(center)}</text>'
    )
    if caption:
        parts.append(
            f'<text x="{cx}" y="{cy + 24}" text-anchor="middle" font-size="12" '
            f'fill="#475569">{escape(caption)}</text>'
        )
    for i, b in enumerate(bars):
        y = 38 + i * 28
        parts.append(
            f'<rect x="{size + 16}" y="{y - 12}" width="14" height="14" rx="3" '
            f'fill="{_color(b.color)}"/>'
            f'<text x="{size + 38}" y="{y}" font-size="14" fill="#1f2937">'
            f'{escape(b.label)}: <tspan font-weight="700">{escape(_fmt(b.value))}</tspan></text>'
        )
    desc = f"{center} {caption}. " + "; ".join(f"{b.label}: {_fmt(b.value)}" for b in bars)
    return _svg(size + 200, size, title, desc, "".join(parts))


def columns(
    bars: Sequence[Bar], *, title: str, unit: str = "", max_value: float | None = None
) -> Markup:
    """Vertical columns (e.g. how many answered 1, 2, ... 5)."""
    width, height, base, left = 420, 190, 160, 10
    slot = (width - left) / max(1, len(bars))
    top = max([max_value or 0] + [b.value for b in bars]) or 1
    parts = [f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#cbd5e1"/>']
    for i, b in enumerate(bars):
        h = (base - 24) * b.value / top
        x = left + i * slot + slot * 0.18
        w = slot * 0.64
        parts.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" '
            f'fill="{_color(b.color)}"/>'
            f'<text x="{x + w / 2:.1f}" y="{base - h - 6:.1f}" text-anchor="middle" '
            f'font-size="13" font-weight="600" fill="#111827">{escape(_fmt(b.value, unit))}</text>'
            f'<text x="{x + w / 2:.1f}" y="{base + 18}" text-anchor="middle" font-size="13" '
            f'fill="#1f2937">{escape(b.label)}</text>'
        )
    desc = "; ".join(f"{b.label}: {_fmt(b.value, unit)}" for b in bars)
    return _svg(width, height, title, desc, "".join(parts))


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = "blue"


#: The widest a character of an 11 px label gets (capitals, "m", "w"), for the label room.
LABEL_CHAR_PX = 7.0


def label_room(n: int, step: float, span: float, rows: int = 1) -> float:
    """The width each of ``n`` axis labels ``step`` apart may take so that none overlaps its
    neighbour on the same row: the end labels are anchored at the edges (they run one way), so
    a label may take two thirds of the distance to its same-row neighbour (half, with only
    the two end labels)."""
    if n <= 1:
        return span
    if n == 2:  # both anchored at the edges, running towards each other
        return step / 2
    return step * rows * 2 / 3


def fit_label(label: str, room: float) -> str:
    """``label``, cut with an ellipsis to fit ``room`` pixels."""
    most = max(3, int(room // LABEL_CHAR_PX))
    return label if len(label) <= most else label[: most - 1].rstrip() + "…"


def lines(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    max_value: float,
    unit: str = "",
) -> Markup:
    """One line per series over the labels (cycles); gaps where a value is missing. Labels
    never overlap: each is cut to the room it has (its full text is its tooltip), and when
    that room is too small for a readable label they take two rows, every other one lower."""
    width, height, left, right, top_pad, base = 600, 236, 44, 24, 26, 186
    n = max(1, len(labels))
    step = (width - left - right) / max(1, n - 1)
    room = label_room(n, step, width - left - right)
    stagger = n > 2 and room < LABEL_CHAR_PX * 10
    if stagger:
        room = label_room(n, step, width - left - right, rows=2)
        height += 14

    def x(i: int) -> float:
        return left + (i * step if n > 1 else (width - left - right) / 2)

    def y(v: float) -> float:
        return base - (base - top_pad) * v / (max_value or 1)

    parts = []
    for frac in (0, 0.5, 1):
        v = max_value * frac
        parts.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" '
            f'stroke="#e2e8f0"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#64748b">{escape(_fmt(v, unit))}</text>'
        )
    for i, label in enumerate(labels):
        short = fit_label(label, room)
        anchor = "middle"
        if n > 1 and i == 0:
            anchor = "start"
        elif n > 1 and i == n - 1:
            anchor = "end"
        row = 13 if stagger and i % 2 else 0
        tip = f"<title>{escape(label)}</title>" if short != label else ""
        parts.append(
            f'<text x="{x(i):.1f}" y="{base + 18 + row}" text-anchor="{anchor}" font-size="11" '
            f'fill="#334155">{tip}{escape(short)}</text>'
        )
    for s in series:
        color = _color(s.color)
        path, pen = [], "M"
        for i, v in enumerate(s.values):
            if v is None:
                pen = "M"
                continue
            path.append(f"{pen}{x(i):.1f},{y(v):.1f}")
            pen = "L"
        if path:
            parts.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="3" '
                f'stroke-linejoin="round" stroke-linecap="round"/>'
            )
        for i, v in enumerate(s.values):
            if v is not None:
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="4.5" fill="{color}"/>'
                    f'<text x="{x(i):.1f}" y="{y(v) - 9:.1f}" text-anchor="middle" '
                    f'font-size="11" fill="#111827">{escape(_fmt(v, unit))}</text>'
                )
    for j, s in enumerate(series):
        lx = left + j * 190
        parts.append(
            f'<rect x="{lx}" y="{height - 16}" width="14" height="4" fill="{_color(s.color)}"/>'
            f'<text x="{lx + 20}" y="{height - 10}" font-size="12" fill="#1f2937">'
            f"{escape(s.name)}</text>"
        )
    desc = " | ".join(
        s.name
        + ": "
        + ", ".join(
            f"{lab}={'–' if v is None else _fmt(v, unit)}"
            for lab, v in zip(labels, s.values, strict=False)
        )
        for s in series
    )
    return _svg(width, height, title, desc, "".join(parts))


def before_after(
    items: Sequence[tuple[str, float | None, float | None, str, str, bool]], *, title: str
) -> Markup:
    """Two bars per KPI: before the cycle (grey) and after it (green if better, red if
    worse). Items: (label, before, after, before as read, after as read, higher_is_better):
    the bars' lengths are the numbers, their labels the words ("1,427,400.00 USD"; where a
    number is missing, why: "no data", "measured at the recap")."""
    # room for the longest label ("Hand-off latency, median") and value ("after 2,572,920.00
    # USD") beside a full-length bar
    width, label_w, row = 660, 190, 54
    plot_w = width - label_w - 190
    parts = []
    for i, (label, before, after, before_text, after_text, higher) in enumerate(items):
        top = max(v for v in (before or 0, after or 0, 1e-9))
        y = i * row + 6
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 26}" text-anchor="end" font-size="13" '
            f'fill="#1f2937">{escape(label)}</text>'
        )
        better = None
        if before is not None and after is not None and before != after:
            better = (after > before) == higher
        after_color = "#16a34a" if better else ("#dc2626" if better is False else "#2563eb")
        for j, (name, v, text, color) in enumerate(
            (("before", before, before_text, "#9ca3af"), ("after", after, after_text, after_color))
        ):
            yy = y + j * 20
            if v is None:
                parts.append(
                    f'<text x="{label_w}" y="{yy + 14}" font-size="12" fill="#64748b">'
                    f"{name}: {escape(text)}</text>"
                )
                continue
            w = plot_w * v / top
            parts.append(
                f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="16" rx="3" '
                f'fill="{color}"/>'
                f'<text x="{label_w + w + 6:.1f}" y="{yy + 13}" font-size="12" fill="#111827">'
                f"{name} {escape(text)}</text>"
            )
    desc = "; ".join(f"{label}: before {b}, after {a}" for label, _b, _a, b, a, _h in items)
    return _svg(width, max(1, len(items)) * row + 6, title, desc, "".join(parts))


def funnel(steps: Sequence[tuple[str, int, float | None, float | None]], *, title: str) -> Markup:
    """The stage-by-stage funnel: one bar per stage from a common start (its length the share
    of the first stage, so stages compare by length), and under it the count, the step
    conversion (against the stage before) and the cumulative one: text never crosses a bar.
    ``steps``: (stage, count, step rate, cumulative rate), rates as fractions or None."""
    width, label_w, row = 560, 110, 50
    plot_w = width - label_w - 10
    top = max([c for _, c, _, _ in steps] + [1])
    parts = []
    for i, (stage, count, step, cumulative) in enumerate(steps):
        y = i * row + 6
        w = max(2.0, plot_w * count / top)
        rate = "" if i == 0 or step is None else f" · {step * 100:.1f}% of the stage before"
        total = "" if i == 0 or cumulative is None else f", {cumulative * 100:.1f}% of all"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="13" '
            f'fill="#1f2937">{escape(stage)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="20" rx="4" '
            f'fill="{_color(SERIES[i % len(SERIES)])}"/>'
            f'<text x="{label_w}" y="{y + 37}" font-size="12" fill="#1f2937">'
            f'<tspan font-weight="600">{count:,}</tspan>{escape(rate)}{escape(total)}</text>'
        )
    desc = "; ".join(
        f"{stage}: {count:,}"
        + ("" if i == 0 or step is None else f" ({step * 100:.1f}% of the stage before)")
        for i, (stage, count, step, _) in enumerate(steps)
    )
    return _svg(width, max(1, len(steps)) * row + 10, title, desc, "".join(parts))
