"""Prometheus text exposition, written by hand: a few counters and two gauges need no library.

Counters live in plain ints touched only from the event loop thread, so no locks are needed.
Backlog and lag come from the database at scrape time. Nothing secret is ever exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.deliveries import PENDING_STATES, WebhookDelivery
from models.stats import WorkerStats
from models.types import utcnow

STORED = "stored"
DUPLICATE = "duplicate"
BAD_SIGNATURE = "bad_signature"
TOO_LARGE = "too_large"
UNAVAILABLE = "unavailable"
OUTCOMES = (STORED, DUPLICATE, BAD_SIGNATURE, TOO_LARGE, UNAVAILABLE)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_table = WebhookDelivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Backlog:
    """Deliveries not yet handed to (or finished by) a worker, and the age of the oldest."""

    rows: int
    lag_seconds: float


class Metrics:
    """The receiver's counters; one instance per app, kept on `app.state.metrics`."""

    def __init__(self, platforms: Iterable[str]) -> None:
        self.deliveries: dict[str, dict[str, int]] = {
            platform: dict.fromkeys(OUTCOMES, 0) for platform in platforms
        }
        self.relay_errors = 0
        self.relay_enqueued = 0

    def count(self, platform: str, outcome: str) -> None:
        self.deliveries[platform][outcome] += 1

    def render(self, backlog: Backlog | None, workers: WorkerStats | None = None) -> str:
        """The exposition text; gauges are left out when their source did not answer."""
        lines = [
            "# HELP archiver_deliveries_total Webhook deliveries received, by outcome.",
            "# TYPE archiver_deliveries_total counter",
        ]
        for platform, outcomes in sorted(self.deliveries.items()):
            for outcome, value in outcomes.items():
                labels = f'platform="{platform}",outcome="{outcome}"'
                lines.append(f"archiver_deliveries_total{{{labels}}} {value}")
        lines += [
            "# HELP archiver_relay_errors_total Failed relay passes (Redis or database down).",
            "# TYPE archiver_relay_errors_total counter",
            f"archiver_relay_errors_total {self.relay_errors}",
            "# HELP archiver_relay_enqueued_total Deliveries handed to the workers' queue.",
            "# TYPE archiver_relay_enqueued_total counter",
            f"archiver_relay_enqueued_total {self.relay_enqueued}",
        ]
        if backlog is not None:
            lines += [
                "# HELP archiver_delivery_backlog Deliveries received or enqueued, not finished.",
                "# TYPE archiver_delivery_backlog gauge",
                f"archiver_delivery_backlog {backlog.rows}",
                "# HELP archiver_delivery_lag_seconds Age of the oldest unfinished delivery.",
                "# TYPE archiver_delivery_lag_seconds gauge",
                f"archiver_delivery_lag_seconds {backlog.lag_seconds:.3f}",
            ]
        if workers is not None:
            lines += worker_lines(workers)
        return "\n".join(lines) + "\n"


FAMILIES = (
    ("archiver_meta_calls_total", "counter", "Graph/Threads API calls, by HTTP status."),
    ("archiver_throttle_pauses_total", "counter", "Account or app pauses, by reason."),
    ("archiver_media", "gauge", "Stories and posts by capture state (final_captured, missed)."),
    ("archiver_token_days_left", "gauge", "Fewest days left on a known token expiry."),
)


def worker_lines(stats: WorkerStats) -> list[str]:
    """What the workers did: Meta calls by status, pauses, captures, token expiry."""
    rows: list[Mapping[str, float]] = [
        {f'platform="{p}",status="{s}"': n for (p, s), n in stats.calls.items()},
        {f'platform="{p}",reason="{r}"': n for (p, r), n in stats.pauses.items()},
        {f'subject_type="{k}",state="{s}"': n for (k, s), n in stats.captures.items()},
        {f'platform="{p}"': d for p, d in stats.token_days.items()},
    ]
    lines = []
    for (name, kind, text), values in zip(FAMILIES, rows, strict=True):
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{labels}}} {value:g}" for labels, value in sorted(values.items())]
    return lines


def query_backlog(engine: Engine) -> Backlog:
    """Blocking: count pending rows and age the oldest (run it in a thread)."""
    stmt = sa.select(sa.func.count(), sa.func.min(_table.c.received_at)).where(
        _table.c.status.in_(PENDING_STATES)
    )
    with engine.connect() as conn:
        rows, oldest = conn.execute(stmt).one()
    lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(rows=int(rows), lag_seconds=max(lag, 0.0))
