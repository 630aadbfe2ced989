"""The receiver's own Prometheus metrics: deliveries by outcome, how long a delivery takes to
be durably stored (the time to the 200), the relay's hand-overs, and, read at scrape time,
which store answers and the delivery backlog. Nothing secret is ever exported.

The workers' figures are not here: each worker process serves its own
(reports.worker_metrics, reports.archive_metrics), so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from models.deliveries import PENDING_STATES, WebhookDelivery
from models.tables import table_of
from models.types import utcnow
from reports.worker_metrics import without_created_series

STORED = "stored"
DUPLICATE = "duplicate"
BAD_SIGNATURE = "bad_signature"
TOO_LARGE = "too_large"
UNAVAILABLE = "unavailable"
OUTCOMES = (STORED, DUPLICATE, BAD_SIGNATURE, TOO_LARGE, UNAVAILABLE)
# A group commit takes a few ms; a busy database or a full writer queue, up to seconds.
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_table = table_of(WebhookDelivery)


@dataclass(frozen=True)
class Backlog:
    """Deliveries not yet handed to (or finished by) a worker, and the age of the oldest."""

    rows: int
    lag_seconds: float


class ReceiverMetrics:
    """The receiver's families in `registry`; one instance per app (`app.state.metrics`)."""

    def __init__(self, registry: CollectorRegistry, platforms: Iterable[str]) -> None:
        without_created_series()
        self.deliveries = Counter(
            "archiver_deliveries_total",
            "Webhook deliveries received, by outcome.",
            ["platform", "outcome"],
            registry=registry,
        )
        self.ingest = Histogram(
            "archiver_delivery_ingest_seconds",
            "From a signed delivery's arrival to its 200 (stored durably, or found stored).",
            ["platform"],
            buckets=INGEST_BUCKETS,
            registry=registry,
        )
        self.relay_enqueued = Counter(
            "archiver_relay_enqueued_total",
            "Deliveries handed to the workers' queue.",
            registry=registry,
        )
        self.relay_errors = Counter(
            "archiver_relay_errors_total",
            "Failed relay passes (Redis or database down).",
            registry=registry,
        )
        # Every outcome shows from the start, at 0; the children are looked up once, since
        # `labels()` on the delivery path would cost more than the counting (~3 us a call).
        known = list(platforms)
        self._counted = {(p, o): self.deliveries.labels(p, o) for p in known for o in OUTCOMES}
        self._ingested = {p: self.ingest.labels(p) for p in known}
        self.scrape = ScrapeFigures()
        registry.register(self.scrape)

    def count(self, platform: str, outcome: str) -> None:
        self._counted[platform, outcome].inc()

    def acked(self, platform: str, outcome: str, seconds: float) -> None:
        """A delivery answered 200 `seconds` after it arrived."""
        self._counted[platform, outcome].inc()
        self._ingested[platform].observe(seconds)


class ScrapeFigures(Collector):
    """What the /metrics handler read just now (stores, backlog); a part it could not read
    is left out rather than shown as 0."""

    def __init__(self) -> None:
        self.stores: Mapping[str, bool] = {}
        self.backlog: Backlog | None = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "archiver_store_up",
            "1 when the store answered now, else 0 (database 0: deliveries get 503; Redis 0: "
            "stored, handed to the workers when it is back).",
            labels=["store"],
        )
        for name, answered in sorted(self.stores.items()):
            up.add_metric([name], int(answered))
        yield up
        backlog = self.backlog
        if backlog is None:
            return
        yield GaugeMetricFamily(
            "archiver_delivery_backlog",
            "Deliveries received or enqueued, not finished.",
            value=backlog.rows,
        )
        yield GaugeMetricFamily(
            "archiver_delivery_lag_seconds",
            "Age of the oldest unfinished delivery.",
            value=backlog.lag_seconds,
        )


def query_backlog(engine: Engine) -> Backlog:
    """Blocking: count pending rows and age the oldest (run it in a thread)."""
    stmt = sa.select(sa.func.count(), sa.func.min(_table.c.received_at)).where(
        _table.c.status.in_(PENDING_STATES)
    )
    with engine.connect() as conn:
        rows, oldest = conn.execute(stmt).one()
    lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(rows=int(rows), lag_seconds=max(lag, 0.0))
