"""The results report: per campaign, audience and step, the funnel from sent to booked.

Built from the ledger and the SendGrid events (counts only; no address, no health data beyond
the audience names the coordinator already works with). Renders as rows (table, JSON, CSV) or
as one self-contained HTML page with an SVG funnel chart per audience.
"""

from __future__ import annotations

import html
import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime

from campaign.csv_export import csv_text
from campaign.store import Store

COUNTS = (
    "enrolled",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "unsubscribed",
    "spam_reports",
    "booked",
)
RATES = {  # rate name -> (numerator, denominator)
    "delivery_rate": ("delivered", "sent"),
    "open_rate": ("opened", "delivered"),
    "click_rate": ("clicked", "delivered"),
    "bounce_rate": ("bounced", "sent"),
    "unsubscribe_rate": ("unsubscribed", "sent"),
    "spam_rate": ("spam_reports", "sent"),
    "booking_rate": ("booked", "enrolled"),
}
EVENT_COLUMNS = {
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "complained": "spam_reports",
    "unsubscribed": "unsubscribed",
}


@dataclass
class Report:
    generated_at: datetime
    rows: list[dict] = field(default_factory=list)  # campaign, audience, step, counts, rates
    median_days_to_booking: dict[tuple[str, str], float | None] = field(default_factory=dict)

    def for_campaign(self, slug: str | None) -> Report:
        if slug is None:
            return self
        return Report(
            self.generated_at,
            [r for r in self.rows if r["campaign"] == slug],
            {k: v for k, v in self.median_days_to_booking.items() if k[0] == slug},
        )


def build_report(store: Store, step_order: dict[str, list[str]], now: datetime) -> Report:
    """step_order: audience -> step keys in sequence order (from the audience files)."""
    cells: dict[tuple[str, str, str], dict] = {}
    first_email: dict[int, datetime] = {}
    # enrollment -> (campaign, audience, step, when): the last email sent before it booked / left
    booked: dict[int, tuple[str, str, str, datetime]] = {}
    unsubscribed: dict[int, tuple[str, str, str, datetime | None]] = {}
    for fact in store.report_facts():
        key = (fact["campaign"], fact["audience"], fact["step_key"])
        cell = cells.setdefault(key, dict.fromkeys(COUNTS[1:], 0))
        if fact["status"] == "sent":
            cell["sent"] += 1
            enrollment = fact["enrollment_id"]
            first_email.setdefault(enrollment, fact["claimed_at"])
            # A booking or an unsubscribe counts for the last email sent before it.
            for when, target in ((fact["booked_at"], booked), (fact["unsubscribed_at"], unsubscribed)):
                if when is not None and fact["claimed_at"] <= when:
                    target[enrollment] = (fact["campaign"], fact["audience"], fact["step_key"], when)
        for kind in fact["events"]:
            if kind in EVENT_COLUMNS and kind != "unsubscribed":
                cell[EVENT_COLUMNS[kind]] += 1
            elif kind == "unsubscribed":
                unsubscribed.setdefault(
                    fact["enrollment_id"], (fact["campaign"], fact["audience"], fact["step_key"], None)
                )
    for campaign, audience, step, _ in booked.values():
        cells[(campaign, audience, step)]["booked"] += 1
    for campaign, audience, step, _ in unsubscribed.values():
        cells[(campaign, audience, step)]["unsubscribed"] += 1

    enrolled = store.enrollment_counts()
    report = Report(generated_at=now)
    for (campaign, audience), n in sorted(enrolled.items()):
        order = step_order.get(audience) or sorted({s for c, a, s in cells if (c, a) == (campaign, audience)})
        for step in order:
            counts = {"enrolled": n, **cells.get((campaign, audience, step), dict.fromkeys(COUNTS[1:], 0))}
            rates = {
                name: round(counts[a] / counts[b], 4) if counts[b] else None for name, (a, b) in RATES.items()
            }
            report.rows.append({"campaign": campaign, "audience": audience, "step": step, **counts, **rates})
        days = [
            (booked[e][3] - first_email[e]).total_seconds() / 86400
            for e in booked
            if booked[e][:2] == (campaign, audience) and e in first_email
        ]
        report.median_days_to_booking[(campaign, audience)] = (
            round(statistics.median(days), 2) if days else None
        )
    return report


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "generated_at": report.generated_at.isoformat(),
            "rows": report.rows,
            "median_days_to_booking": [
                {"campaign": c, "audience": a, "days": d}
                for (c, a), d in report.median_days_to_booking.items()
            ],
        },
        indent=1,
    )


def to_csv(report: Report) -> str:
    return csv_text(["campaign", "audience", "step", *COUNTS, *RATES], report.rows)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


FUNNEL = ("sent", "delivered", "opened", "clicked", "booked")
COLORS = {
    "sent": "#12506b",
    "delivered": "#2f7f9e",
    "opened": "#5aa6c2",
    "clicked": "#e0a526",
    "booked": "#2e8540",
}


def _nice_top(value: int) -> int:
    """The y-axis maximum: the smallest 1, 2 or 5 times a power of ten at or above `value`."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def funnel_svg(rows: list[dict], title: str) -> str:
    """A grouped bar chart: per step (x axis, in sequence order), bars for sent → booked, each
    labelled with its count; the y axis (emails) with gridlines. Inline SVG, no script; it
    scales to the page's width."""
    width, height, left, right, top_pad, bottom = 960, 340, 64, 12, 28, 74
    plot_h = height - top_pad - bottom
    base = height - bottom
    top = _nice_top(max([r[k] for r in rows for k in FUNNEL] + [1]))
    group = (width - left - right) / max(len(rows), 1)
    bar = group / (len(FUNNEL) + 1)
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui,sans-serif">',
    ]
    divisions = next(d for d in (5, 4, 2, 1) if top % d == 0)  # whole numbers on the y axis
    for i in range(divisions + 1):  # gridlines and their labels, 0 to the top
        y = base - plot_h * i / divisions
        label = top * i // divisions
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{"#9aa5b1" if i == 0 else "#e4e7eb"}"/>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="#3e4c59">{label}</text>'
        )
    parts.append(
        f'<text class="axis y" x="14" y="{top_pad + plot_h / 2:.1f}" font-size="13" fill="#1f2933" '
        f'text-anchor="middle" transform="rotate(-90 14 {top_pad + plot_h / 2:.1f})">emails</text>'
    )
    for i, row in enumerate(rows):
        x0 = left + i * group
        for j, kind in enumerate(FUNNEL):
            h = plot_h * row[kind] / top
            x = x0 + (j + 0.5) * bar
            parts.append(
                f'<rect class="bar {kind}" x="{x:.1f}" y="{base - h:.1f}" width="{bar * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[kind]}"><title>{html.escape(row["step"])}: {row[kind]} '
                f"{kind}</title></rect>"
                f'<text class="value {kind}" x="{x + bar * 0.45:.1f}" y="{base - h - 4:.1f}" '
                f'font-size="11" text-anchor="middle" fill="#1f2933">{row[kind]}</text>'
            )
        parts.append(
            f'<text class="step" x="{x0 + group / 2:.1f}" y="{base + 18}" font-size="13" '
            f'text-anchor="middle" fill="#1f2933">{html.escape(row["step"])}</text>'
        )
    parts.append(
        f'<text class="axis x" x="{left + (width - left - right) / 2:.1f}" y="{base + 38}" font-size="13" '
        f'text-anchor="middle" fill="#1f2933">step of the sequence</text>'
    )
    legend_x = left
    for kind in FUNNEL:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 18}" width="12" height="12" fill="{COLORS[kind]}"/>'
            f'<text x="{legend_x + 17}" y="{height - 8}" font-size="12" fill="#1f2933">{kind}</text>'
        )
        legend_x += 110
    parts.append("</svg>")
    return "".join(parts)


def no_events_note(report: Report) -> str:
    if any(r["delivered"] or r["bounced"] for r in report.rows) or not any(r["sent"] for r in report.rows):
        return ""
    return (
        "<p class=note><strong>No delivery events yet.</strong> Delivered, opened and clicked come from "
        "SendGrid's Event Webhook (see <code>campaign serve</code>); emails written to the outbox have "
        "none.</p>"
    )


def to_html(report: Report) -> str:
    sections = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in report.rows:
        groups.setdefault((row["campaign"], row["audience"]), []).append(row)
    for (campaign, audience), rows in groups.items():
        median = report.median_days_to_booking.get((campaign, audience))
        head = "".join(
            f"<th scope=col>{html.escape(c.replace('_', ' '))}</th>"
            for c in ("step", *COUNTS, "open rate", "click rate", "booking rate")
        )
        body = "".join(
            "<tr>"
            + f"<th scope=row>{html.escape(r['step'])}</th>"
            + "".join(f"<td>{r[c]}</td>" for c in COUNTS)
            + f"<td>{pct(r['open_rate'])}</td><td>{pct(r['click_rate'])}</td>"
            f"<td>{pct(r['booking_rate'])}</td></tr>"
            for r in rows
        )
        title = f"{campaign} · {audience}"
        sections.append(f"""<section class="audience"><h2>{html.escape(title)}</h2>
<figure>{funnel_svg(rows, f"Funnel for {title}")}\
<figcaption>Per step: sent, delivered, opened, clicked, booked.
Median time from first email to booking: {"–" if median is None else f"{median} days"}.</figcaption></figure>
<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></section>""")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">\
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Campaign report</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem;color:#1f2933;background:#fff}}
h1{{font-size:1.6rem}} h2{{font-size:1.2rem;margin-top:2rem}} figure{{margin:0;width:100%}}
figure svg{{display:block;width:100%;height:auto}}
figcaption{{color:#3e4c59;font-size:.9rem}} \
.note{{background:#fff7e6;padding:.6rem .8rem;border-radius:6px}} .scroll{{overflow-x:auto}}
table{{border-collapse:collapse;margin-top:.75rem;font-size:.9rem}} \
th,td{{border-bottom:1px solid #d9e2ec;padding:.3rem .5rem;text-align:right}}
th[scope=row],thead th:first-child{{text-align:left}}
</style></head><body>
<h1>Campaign report</h1>
<p>Generated {html.escape(report.generated_at.strftime("%Y-%m-%d %H:%M UTC"))}. Counts only: no addresses.
Rates: opens and clicks per delivered email; bookings per enrolled lead.</p>
{no_events_note(report)}{"".join(sections) or "<p>No campaign has enrolled anyone yet.</p>"}
</body></html>
"""
