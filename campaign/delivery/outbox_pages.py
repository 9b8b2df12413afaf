"""The outbox's pages, opened from disk in a browser: ``index.html`` (every email, with counts
and a filter) and one readable ``<name>.html`` beside each ``.eml``. Pure: strings in, HTML out.

The outbox is a static folder, so the filter is a small external script (``outbox.js``, no
inline script, no network); without it every row shows. The audience, step and campaign of a
row come from the ledger through the index (``labels.jsonl``), never from a file name or a
header of the ``.eml``: the audience says what a lead reported, and stays in this local folder.
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.models import OutboundEmail

e = html.escape
FILTERS = ("audience", "step", "campaign")  # the row labels a coordinator filters by
SCRIPT_FILE = "outbox.js"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem;color:#1f2933}
h1{font-size:1.5rem;margin:0 0 .4rem} a{color:#12506b}
.counts{display:flex;flex-wrap:wrap;gap:.4rem 1.5rem;margin:.6rem 0;font-size:.95rem}
.counts span{white-space:nowrap} form{margin:.8rem 0;display:flex;gap:1rem;flex-wrap:wrap;align-items:end}
label{font-size:.85rem;color:#52606d;display:flex;flex-direction:column}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #d9e2ec;padding:.35rem .5rem;text-align:left;font-size:.92rem}
td{vertical-align:top}
td.to{word-break:break-all} .test{background:#fde68a;border-radius:4px;padding:0 .4rem;font-size:.8rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem} dt{font-weight:600;color:#52606d}
dd{margin:0;word-break:break-word}
iframe{width:100%;max-width:680px;height:1100px;border:1px solid #bcccdc;border-radius:6px;display:block}
pre{white-space:pre-wrap;background:#f8fafc;border:1px solid #d9e2ec;padding:.8rem;border-radius:6px}
"""

# Filters the rows of index.html by the chosen audience, step and campaign. External (outbox.js)
# so the page holds no inline script; the form stays hidden where scripts do not run.
FILTER_SCRIPT = """\
(function () {
  var form = document.getElementById('filter');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#emails tbody tr'));
  var shown = document.getElementById('shown');
  var keys = ['audience', 'step', 'campaign'];
  function apply() {
    var count = 0;
    rows.forEach(function (row) {
      var match = keys.every(function (k) {
        var want = form.elements[k].value;
        return !want || row.getAttribute('data-' + k) === want;
      });
      row.hidden = !match;
      if (match) count++;
    });
    shown.textContent = count + ' of ' + rows.length + ' emails shown';
  }
  form.hidden = false;
  form.addEventListener('change', apply);
  apply();
})();
"""


def _page(title: str, body: str, *, script: bool = False) -> str:
    tag = f'<script src="{SCRIPT_FILE}" defer></script>' if script else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style>{tag}</head>\n<body>{body}</body></html>\n"
    )


def _address(name: str, address: str) -> str:
    return f"{name} <{address}>" if name else address


def email_page(email: OutboundEmail, *, date: datetime, eml_name: str) -> str:
    """One email as a coordinator reads it: its headers, the HTML part in a sandboxed frame (no
    scripts, links open outside it), the text part, and a link to the raw .eml."""
    rows = [
        ("Date (UTC)", date.strftime("%Y-%m-%d %H:%M:%S")),
        ("From", _address(email.from_name, email.from_email)),
        ("To", _address(email.to_name, email.to_email)),
        ("Reply-To", email.reply_to or ""),
        ("Subject", email.subject),
        ("Preheader", email.preheader),
        ("Send id", email.send_id),
    ]
    details = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows if v)
    test = ' <span class="test">test</span>' if email.is_test else ""
    frame = email.html.replace("<head>", '<head><base target="_blank">', 1)
    body = (
        f'<p><a href="index.html">&larr; Outbox</a> · <a href="{e(eml_name)}">raw message (.eml)</a></p>'
        f"<h1>{e(email.subject)}{test}</h1><dl>{details}</dl>"
        f'<iframe title="The email as HTML" sandbox="allow-popups allow-popups-to-escape-sandbox" '
        f'srcdoc="{e(frame, quote=True)}"></iframe>'
        f"<details><summary>Text part</summary><pre>{e(email.text)}</pre></details>"
    )
    return _page(email.subject or "Email", body)


def _counts(entries: list[dict]) -> str:
    parts = [f"<span><strong>{len(entries)}</strong> emails</span>"]
    tests = sum(1 for entry in entries if entry.get("test"))
    if tests:
        parts.append(f"<span>{tests} test email(s)</span>")
    for key in FILTERS:
        counted = Counter(entry.get(key) or "–" for entry in entries)
        listed = ", ".join(f"{e(name)} {n}" for name, n in sorted(counted.items()))
        parts.append(f'<span class="by-{key}">by {key}: {listed}</span>')
    return f'<p class="counts">{"".join(parts)}</p>'


def _filter_form(entries: list[dict]) -> str:
    selects = []
    for key in FILTERS:
        values = sorted({entry[key] for entry in entries if entry.get(key)})
        options = "".join(f'<option value="{e(v, quote=True)}">{e(v)}</option>' for v in values)
        selects.append(
            f'<label>{key}<select name="{key}"><option value="">all</option>{options}</select></label>'
        )
    return f'<form id="filter" hidden>{"".join(selects)}<output id="shown"></output></form>'


def _row(entry: dict) -> str:
    data = "".join(f' data-{key}="{e(entry.get(key) or "", quote=True)}"' for key in FILTERS)
    test = ' <span class="test">test</span>' if entry.get("test") else ""
    subject_link = entry.get("view") or entry["file"]
    cells = [
        e(entry["date"][:16].replace("T", " ")),
        e(entry["to"]),
        *(e(entry.get(key) or "–") for key in FILTERS),
        f'<a href="{e(subject_link, quote=True)}">{e(entry["subject"])}</a>{test}',
        f'<a href="{e(entry["file"], quote=True)}">.eml</a>',
    ]
    classes = ["", ' class="to"', "", "", "", "", ""]
    return f"<tr{data}>" + "".join(f"<td{c}>{v}</td>" for c, v in zip(classes, cells)) + "</tr>"


def index_page(entries: list[dict]) -> str:
    """Every email in the outbox, oldest first: counts, the filter, one row each."""
    head = "".join(
        f"<th>{h}</th>" for h in ("Date (UTC)", "To", "Audience", "Step", "Campaign", "Subject", "Raw")
    )
    body = (
        "<h1>Outbox</h1><p>Emails written by the outbox transport instead of sending them. Click a "
        "subject to read the email; a .eml opens in any mail program.</p>"
        + _counts(entries)
        + _filter_form(entries)
        + f'<table id="emails"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(_row(entry) for entry in entries)
        + "\n</tbody></table>"
    )
    return _page("Outbox", body, script=True)
