"""HTML building blocks. Everything from the database is escaped on the way in: a cell is text
unless it is `Html`, markup this package built itself (charts, links).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.withheld{color:#a60;font-style:italic}.final{font-weight:bold}.bad{color:#b00}
.exports a{margin-left:.6em}svg.chart{display:block;margin:.3em 0 1.2em}
.legend span{margin-right:1em}pre{white-space:pre-wrap;margin:0}
"""


class Html(str):
    """Markup built here; `cell` and `page` pass it through unescaped."""


def text(value: object) -> Html:
    """Escaped text; None as a dash; datetimes in UTC ISO form."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("-")
    if isinstance(value, datetime):
        return Html(escape(value.strftime("%Y-%m-%d %H:%M:%S UTC")))
    if isinstance(value, float):
        return Html(escape(f"{value:g}"))
    return Html(escape(str(value)))


def link(href: str, label: object) -> Html:
    return Html(f'<a href="{escape(href)}">{text(label)}</a>')


def path(*parts: str) -> str:
    """A URL path whose segments (media ids from the database) are percent-encoded."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> Html:
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = (
        "".join("<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows)
        or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    )
    return Html(f'<table class="{escape(css)}"><tr>{head}</tr>{body}</table>')


def _cell(value: object) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{text(value)}</td>' if numeric else f"<td>{text(value)}</td>"


def export_links(**query: str | None) -> Html:
    """Links to the CSV and JSON-lines export of the rows a page shows."""
    params = urlencode({key: value for key, value in query.items() if value is not None})
    links = "".join(link(f"/export/{fmt}?{params}", fmt.upper()) for fmt in ("csv", "jsonl"))
    return Html(f'<p class="exports">Export what this page shows:{links}</p>')


def page(title: str, *sections: Html) -> Html:
    """A whole document: the navigation, a heading, then the sections."""
    nav = link("/", "Accounts") + link("/deliveries", "Deliveries")
    return Html(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{text(title)} · archiver</title><style>{STYLE}</style></head>"
        f"<body><nav>{nav}</nav><h1>{text(title)}</h1>{''.join(sections)}</body></html>"
    )


def heading(title: str) -> Html:
    return Html(f"<h2>{text(title)}</h2>")
