"""The reports page's funnel chart as plain geometry (pure): the template draws it as inline SVG
with CSS classes for colours, so it needs neither script nor inline style."""

from __future__ import annotations

from dataclasses import dataclass

from campaign.report import FUNNEL

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 28  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    kind: str  # sent, delivered, opened, clicked, booked (the CSS class k-<kind>)
    x: float
    y: float
    width: float
    height: float
    title: str  # e.g. "welcome: 6 sent"


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    steps: list[Label]  # under each group of bars
    top: int  # the count the highest bar reaches
    baseline: float  # y of the axis
    left: int = LEFT  # x where the axis starts

    @property
    def description(self) -> str:
        return f"Bars per step for {', '.join(FUNNEL)}; the tallest is {self.top}."


def funnel_chart(rows: list[dict]) -> Chart:
    """One group of bars per step (in the rows' order), one bar per funnel count."""
    top = max([row[kind] for row in rows for kind in FUNNEL] + [1])
    baseline = HEIGHT - BOTTOM
    usable = baseline - TOP
    group = (WIDTH - LEFT - RIGHT) / max(len(rows), 1)
    slot = group / (len(FUNNEL) + 1)
    bars, steps = [], []
    for i, row in enumerate(rows):
        x0 = LEFT + i * group
        for j, kind in enumerate(FUNNEL):
            height = usable * row[kind] / top
            bars.append(
                Bar(
                    kind,
                    round(x0 + (j + 0.5) * slot, 1),
                    round(baseline - height, 1),
                    round(slot * 0.9, 1),
                    round(height, 1),
                    f"{row['step']}: {row[kind]} {kind}",
                )
            )
        steps.append(Label(round(x0 + group / 2, 1), baseline + 18, row["step"]))
    return Chart(WIDTH, HEIGHT, bars, steps, top, baseline)
