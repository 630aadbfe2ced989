"""A worker process's own Prometheus metrics: what this process did (Meta calls and their
latency, pauses it took, job outcomes, how late its captures ran). Each process counts its own
work, so summing over processes is right; the archive-wide gauges are reports.archive_metrics'.

The registry is passed in (never prometheus_client's global one), so tests can run several
workers in one process and `archiver run` can serve receiver and worker on one port.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from reports.figures import platform_of

# Meta answers in ~0.1-2 s; retries and slow pages reach tens of seconds.
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Captures run from on time (under a second after due) to minutes behind.
LAG_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
OK = "ok"
FINAL = "final"
SCHEDULED = "scheduled"

_EDGE = re.compile(r"^[a-z_]+$")  # `stories`, `insights`, `me`, `refresh_access_token`
_VERSION = re.compile(r"^v\d+(\.\d+)?$")


def without_created_series() -> None:
    """No `_created` series beside every counter and histogram: they double the exposition
    for nothing Prometheus needs (prometheus_client's switch is library-wide)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]


def endpoint_of(path: str) -> str:
    """A request path as a low-cardinality template: what follows the API version (the whole
    path when it has none), every id (anything but a lowercase edge name) as `{id}`:
    `/v21.0/1784/stories` -> `/{id}/stories`."""
    parts = [p for p in path.split("/") if p]
    versions = [n for n, part in enumerate(parts) if _VERSION.match(part)]
    if versions:
        parts = parts[versions[0] + 1 :]
    return "/" + "/".join(p if _EDGE.match(p) else "{id}" for p in parts)


class WorkerMetrics:
    """The families one worker process exports; every figure has one method that counts it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        without_created_series()
        self.registry = registry
        self.calls = Counter(
            "archiver_meta_calls_total",
            "Graph/Threads API calls made by this process, by endpoint and HTTP status "
            "(`error`: no answer).",
            ["platform", "endpoint", "status"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "archiver_meta_call_duration_seconds",
            "Time from sending a Meta API request to its answer (one try), by endpoint.",
            ["platform", "endpoint"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.pauses = Counter(
            "archiver_throttle_pauses_total",
            "Account or app pauses this process set, by reason (throttled, regain, slowdown, "
            "app_limit).",
            ["platform", "reason"],
            registry=registry,
        )
        self.jobs = Counter(
            "archiver_jobs_total",
            "Job runs in this process, by outcome: ok, retry (a try failed, retried later), "
            "gave_up (the last try failed; the schedule moved on).",
            ["function", "outcome"],
            registry=registry,
        )
        self.capture_lag = Histogram(
            "archiver_capture_lag_seconds",
            "captured_at minus the time the capture was due, by subject type and kind (final: "
            "a story's last capture before expiry; scheduled: the other slots).",
            ["subject_type", "kind"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    def meta_call(self, key: str, path: str, status: str, seconds: float) -> None:
        platform, endpoint = platform_of(key), endpoint_of(path)
        self.calls.labels(platform, endpoint, status).inc()
        self.call_seconds.labels(platform, endpoint).observe(seconds)

    def paused(self, key: str, reason: str) -> None:
        self.pauses.labels(platform_of(key), reason).inc()

    def job(self, function: str, outcome: str) -> None:
        self.jobs.labels(function, outcome).inc()

    def captured(self, subject_type: str, kind: str, lag_seconds: float) -> None:
        """One new snapshot `lag_seconds` after its due time (early counts as 0)."""
        self.capture_lag.labels(subject_type, kind).observe(max(lag_seconds, 0.0))
