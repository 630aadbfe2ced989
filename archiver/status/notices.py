"""The notices part of `archiver status`: text lines and the `--json` object."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from archiver.status.as_json import safe
from archiver.status.as_text import ago, since
from models.notices import DELIVERED, PENDING, UNDELIVERABLE
from reports.notices import NoticeReport, UnsentNotice


def notices_json(report: NoticeReport, *, enabled: bool) -> dict[str, Any]:
    unsent = []
    for notice in report.unsent:
        row = asdict(notice)
        row["text"], row["last_error"] = safe(notice.text), safe(notice.last_error)
        unsent.append(row)
    return {
        "enabled": enabled,
        "by_state": report.by_state,
        "pending": report.by_state.get(PENDING, 0),
        "undeliverable": report.by_state.get(UNDELIVERABLE, 0),
        "unsent": unsent,
    }


def notices_lines(report: NoticeReport, *, enabled: bool, now: datetime) -> list[str]:
    """`notices     2 pending, 1 undeliverable, 14 delivered`, then the latest unsent ones."""
    counts = [
        f"{report.by_state[state]} {state}"
        for state in (PENDING, UNDELIVERABLE, DELIVERED)
        if report.by_state.get(state)
    ]
    head = ", ".join(counts) or "none yet"
    if not enabled:
        head = "off (NOTIFY_WEBHOOK_URL unset)" + (f"; kept: {head}" if counts else "")
    return [f"notices     {head}", *(_unsent_line(n, now) for n in report.unsent)]


def _unsent_line(notice: UnsentNotice, now: datetime) -> str:
    tries = f"{notice.attempts} {'try' if notice.attempts == 1 else 'tries'}"
    if notice.state == PENDING and notice.next_attempt_at is not None:
        tries += f", next {since(notice.next_attempt_at, now)}"
    error = f": {safe(notice.last_error)}" if notice.last_error else ""
    return (
        f"  {notice.state} {notice.kind} {ago(notice.created_at, now)}, {tries}{error}"
        f" | {safe(notice.text)}"
    )
