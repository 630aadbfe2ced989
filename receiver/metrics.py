"""Prometheus text exposition, written by hand: a few counters and gauges need no library.

Counters live in plain ints touched only from the event loop thread, so no locks are needed.
Backlog and lag come from the database at scrape time. Nothing secret is ever exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.deliveries import PENDING_STATES, WebhookDelivery
from models.tables import table_of
from models.types import utcnow
from reports.figures import Counters, Gauges, WorkerStats

STORED = "stored"
DUPLICATE = "duplicate"
BAD_SIGNATURE = "bad_signature"
TOO_LARGE = "too_large"
UNAVAILABLE = "unavailable"
OUTCOMES = (STORED, DUPLICATE, BAD_SIGNATURE, TOO_LARGE, UNAVAILABLE)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_table = table_of(WebhookDelivery)


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

    def render(
        self,
        backlog: Backlog | None,
        workers: WorkerStats | None = None,
        stores: Mapping[str, bool] | None = None,
    ) -> str:
        """The exposition text; gauges are left out when their source did not answer."""
        lines = store_lines(stores or {})
        lines += [
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


def store_lines(stores: Mapping[str, bool]) -> list[str]:
    """1 per store that answered a ping now; Redis at 0 means degraded, not down: deliveries
    are still stored and the relay hands them over when it is back."""
    return family(
        "archiver_store_up",
        "gauge",
        "1 when the store answered now, else 0 (database 0: deliveries get 503).",
        {labels(store=name): int(up) for name, up in stores.items()},
    )


def family(name: str, kind: str, text: str, samples: Mapping[str, float]) -> list[str]:
    """One metric family: HELP, TYPE, then a sample per label set (`labels` -> value)."""
    lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{{{key}}} {number(value)}" for key, value in sorted(samples.items())]


def number(value: float) -> str:
    """Counts exactly (`{:g}` would print 1e+06), other values to the millisecond."""
    return str(value) if isinstance(value, int) else repr(round(value, 3))


def labels(**values: str) -> str:
    """`a="x",b="y"`, escaped as the exposition format requires."""
    escape = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
    return ",".join(f'{name}="{value.translate(escape)}"' for name, value in values.items())


def worker_lines(stats: WorkerStats) -> list[str]:
    """What the workers did and what is behind; each part only when its store answered."""
    lines = []
    if stats.counters is not None:
        lines += counter_lines(stats.counters)
    if stats.gauges is not None:
        lines += gauge_lines(stats.gauges)
    return lines


def counter_lines(counters: Counters) -> list[str]:
    """Meta calls by status, pauses by reason, failed jobs, time left on app-wide pauses."""
    return [
        *family(
            "archiver_meta_calls_total",
            "counter",
            "Graph/Threads API calls, by HTTP status.",
            {labels(platform=p, status=s): n for (p, s), n in counters.calls.items()},
        ),
        *family(
            "archiver_throttle_pauses_total",
            "counter",
            "Account or app pauses, by reason.",
            {labels(platform=p, reason=r): n for (p, r), n in counters.pauses.items()},
        ),
        *family(
            "archiver_job_failures_total",
            "counter",
            "Worker job runs that failed: a retry scheduled, or the job given up.",
            {labels(function=f, outcome=o): n for (f, o), n in counters.job_failures.items()},
        ),
        *family(
            "archiver_app_paused_seconds",
            "gauge",
            "Time left on the app-wide pause (code 4 or X-App-Usage); 0 when not paused.",
            {labels(platform=p): s for p, s in counters.app_paused.items()},
        ),
    ]


def gauge_lines(gauges: Gauges) -> list[str]:
    """Captures, accounts, tokens and overdue work, read from the database now."""
    overdue = gauges.overdue.items()
    return [
        *family(
            "archiver_media",
            "gauge",
            "Stories and posts by capture state (final_captured, missed).",
            {labels(subject_type=k, state=s): n for (k, s), n in gauges.captures.items()},
        ),
        *family(
            "archiver_accounts",
            "gauge",
            "Accounts by state, per platform (Threads: linked profiles).",
            {labels(platform=p, state=s): n for (p, s), n in gauges.accounts.items()},
        ),
        *family(
            "archiver_accounts_with_problem",
            "gauge",
            "Accounts backing off after an error retrying cannot fix (see archiver status).",
            {labels(platform=p): n for p, n in gauges.problems.items()},
        ),
        *family(
            "archiver_oldest_overdue_seconds",
            "gauge",
            "Age of the oldest poll or capture due more than two scheduler ticks ago; 0: none.",
            {labels(kind=kind): found.oldest_seconds for kind, found in overdue},
        ),
        *family(
            "archiver_overdue",
            "gauge",
            "Polls and captures due more than two scheduler ticks ago, by kind.",
            {labels(kind=kind): found.count for kind, found in overdue},
        ),
        *token_lines(gauges),
    ]


def token_lines(gauges: Gauges) -> list[str]:
    """Token expiry: the fewest days left, data access (Facebook Login), what is known."""
    return [
        *family(
            "archiver_token_days_left",
            "gauge",
            "Fewest days left on a known token expiry.",
            {labels(platform=p): d for p, d in gauges.token_days.items()},
        ),
        *family(
            "archiver_data_access_days_left",
            "gauge",
            "Fewest days left before a Facebook Login user's data access expires.",
            {labels(platform=p): d for p, d in gauges.data_access_days.items()},
        ),
        *family(
            "archiver_tokens",
            "gauge",
            "Tokens by what is known of their expiry: dated, never (Facebook Login), unknown.",
            {labels(platform=p, expiry=e): n for (p, e), n in gauges.tokens.items()},
        ),
    ]


def query_backlog(engine: Engine) -> Backlog:
    """Blocking: count pending rows and age the oldest (run it in a thread)."""
    stmt = sa.select(sa.func.count(), sa.func.min(_table.c.received_at)).where(
        _table.c.status.in_(PENDING_STATES)
    )
    with engine.connect() as conn:
        rows, oldest = conn.execute(stmt).one()
    lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(rows=int(rows), lag_seconds=max(lag, 0.0))
