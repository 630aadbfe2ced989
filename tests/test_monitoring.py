"""Monitoring: each worker process serves its own metrics on WORKER_METRICS_PORT (Meta calls
and their latency by endpoint, jobs by outcome, capture lag, the archive-wide gauges), and the
Grafana dashboard and alert rules in deploy/ use only metrics that the receiver and the
workers really export."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML ships no type stubs
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from core.config import Settings
from core.errors import ArchiverError
from models.db import create_db_engine
from reports.figures import CALLS_KEY, JOB_FAILURES_KEY, PAUSES_KEY
from reports.worker_metrics import WorkerMetrics
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.servers import free_port
from tests.test_cli import archiver, env_for
from tests.test_metrics import samples
from tests.test_receiver import serve_ops
from tests.test_stories import DAY, closed, register, story_settings
from tests.workers_harness import eventually, running_workers
from workers.exporter import Exporter, start_exporter
from workers.meta.pacing import Pacer
from workers.runtime.context import Context
from workers.runtime.failures import GAVE_UP, count, guarded

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
# The alerts the operator needs (README, Monitoring); more may be added.
REQUIRED_ALERTS = {
    "ArchiverTokenExpiresSoon",
    "ArchiverAccountNeedsReauth",
    "ArchiverFinalMissed",
    "ArchiverCapturesOverdue",
    "ArchiverDeliveriesFailing",
    "ArchiverMetaThrottlingSustained",
}
METRIC_NAME = re.compile(r"\barchiver_[a-z_]+\b")
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(pg_url: str, redis_url: str) -> Settings:
    """PostgreSQL, whose families are a superset of SQLite's (the partition gauge)."""
    return make_settings(pg_url, redis_url)


@pytest.fixture
def exporter(settings: Settings) -> Iterator[tuple[Exporter, WorkerMetrics]]:
    """A worker's metrics listener on a free port, with the metrics its lanes count into."""
    registry = CollectorRegistry()
    served = settings.model_copy(update={"worker_metrics_port": free_port()})
    started = start_exporter(served, registry)
    assert started is not None
    try:
        yield started, WorkerMetrics(registry)
    finally:
        started.close()


def url_of(exporter: Exporter) -> str:
    host, port = exporter.address
    return f"http://{host}:{port}/metrics"


@pytest.mark.anyio
async def test_a_worker_serves_its_calls_jobs_and_capture_lag(
    sqlite_url: str, redis_url: str, sim: RunningSim
) -> None:
    """A real worker captures a story's final against the simulator: its own listener shows
    the Meta calls by endpoint template (never an id) with their latency, the job's outcome,
    the final's capture lag, and the archive-wide gauges (one backend: what is measured does
    not depend on it)."""
    engine = create_db_engine(sqlite_url)
    ig = register(engine, sim.world)
    sim.world.add_story(ig, age_seconds=DAY - 120)
    settings = story_settings(
        engine.url.render_as_string(False),
        redis_url,
        sim,
        story_final_margin_seconds=600,
        worker_metrics_port=free_port(),
    )
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    exporter = start_exporter(settings, registry)
    assert exporter is not None
    try:
        ok = {"function": "capture_story", "outcome": "ok"}
        async with running_workers(settings, metrics=metrics):
            await eventually(lambda: closed(engine, 1), timeout=10)
            # counted once the job returns, just after the commit that closed the story
            await eventually(lambda: registry.get_sample_value("archiver_jobs_total", ok))
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(url_of(exporter))).text
    finally:
        exporter.close()
        engine.dispose()
    values = samples(text)
    stories = 'endpoint="/{id}/stories",platform="instagram"'
    insights = 'endpoint="/{id}/insights",platform="instagram"'
    assert values[f'archiver_meta_calls_total{{{stories},status="200"}}'] >= 1
    assert values[f"archiver_meta_call_duration_seconds_count{{{insights}}}"] >= 1
    assert values[f"archiver_meta_call_duration_seconds_sum{{{insights}}}"] > 0
    assert values['archiver_jobs_total{function="capture_story",outcome="ok"}'] >= 1
    assert values['archiver_capture_lag_seconds_count{kind="final",subject_type="story"}'] == 1
    assert 'archiver_media{state="live",subject_type="story"}' not in values  # captured
    assert not [name for name in values if "final_captured" in name]  # grows: not counted
    assert ig not in "".join(name for name in values if name.startswith("archiver_meta"))


async def _count_everything(redis_url: str, metrics: WorkerMetrics) -> dict[str, Any]:
    """A call, a pause and three job runs through the places that count them."""
    redis = Redis.from_url(redis_url)
    try:
        pacer = Pacer(redis, jitter=0, metrics=metrics)
        await pacer.count_call("threads:26", "500", path="/v1.0/26/threads", seconds=0.2)
        await pacer.pause("threads:26", 0.01, reason="throttled")

        @guarded("poll_threads", max_tries=1, record=_nothing, give_up=_gave_up)
        async def job(ctx: Context, fail: bool, count_own: bool) -> str:
            if count_own:
                await count(ctx, "poll_threads", GAVE_UP)
            if fail:
                raise KeyError("data")
            return "done"

        for fail, count_own in ((False, False), (True, False), (False, True)):
            await job({"redis": cast(ArqRedis, redis), "metrics": metrics}, fail, count_own)
        keys = (CALLS_KEY, PAUSES_KEY, JOB_FAILURES_KEY)
        return {key: await redis.hgetall(key) for key in keys}
    finally:
        await redis.aclose()


async def _nothing(*_args: Any) -> None:
    """A job's `record`: nothing to keep here."""


async def _gave_up(*_args: Any) -> str:
    return "gave up"


@pytest.mark.anyio
async def test_each_figure_is_counted_once_in_both_records(redis_url: str) -> None:
    """One place counts each figure into the process's metrics and the archive-wide Redis
    record (status and dashboard): a call, a pause, jobs ok or given up (a job that counted
    its own failure is not also counted ok); Redis keeps failures only."""
    registry = CollectorRegistry()
    found = await _count_everything(redis_url, WorkerMetrics(registry))
    value = registry.get_sample_value
    call = {"platform": "threads", "endpoint": "/{id}/threads", "status": "500"}
    assert value("archiver_meta_calls_total", call) == 1
    assert value("archiver_throttle_pauses_total", {"platform": "threads", "reason": "throttled"})
    jobs = {o: value("archiver_jobs_total", {"function": "poll_threads", "outcome": o})
            for o in ("ok", "gave_up")}  # fmt: skip
    assert jobs == {"ok": 1, "gave_up": 2}
    assert found[CALLS_KEY] == {b"threads|500": b"1"}
    assert found[PAUSES_KEY] == {b"threads|throttled": b"1"}
    assert found[JOB_FAILURES_KEY] == {b"poll_threads|gave_up": b"2"}


def test_a_taken_worker_metrics_port_is_a_one_line_error(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """WORKER_METRICS_PORT in use: `archiver worker` exits 1 with one line naming the
    setting, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_for(sqlite_url, redis_url, WORKER_METRICS_PORT=str(port))
        result = archiver("worker", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("archiver: error: the worker's metrics listener could not bind")
    assert "choose another WORKER_METRICS_PORT (0 turns it off)" in last
    assert "Traceback" not in result.stderr


def test_a_taken_port_leaves_nothing_open(sqlite_url: str) -> None:
    """The exporter that cannot bind raises ArchiverError and lets its connections go."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = make_settings(sqlite_url, None, worker_metrics_port=taken.getsockname()[1])
        with pytest.raises(ArchiverError, match="WORKER_METRICS_PORT"):
            start_exporter(settings, CollectorRegistry())
    assert start_exporter(make_settings(sqlite_url, None), CollectorRegistry()) is None


def exported(text: str) -> dict[str, str]:
    """Every family in an exposition (HELP/TYPE even before a sample) -> its type."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The exported family a PromQL name belongs to: itself (a counter's `_total` included),
    or the histogram its `_bucket`/`_sum`/`_count` series belong to."""
    for candidate in (name, name.removesuffix("_total")):
        if candidate in families:
            return candidate
    for part in HISTOGRAM_PARTS:
        if name.endswith(part) and families.get(name.removesuffix(part)) == "histogram":
            return name.removesuffix(part)
    return None


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_dashboard_and_alerts_use_only_exported_metrics(
    settings: Settings, exporter: tuple[Exporter, WorkerMetrics]
) -> None:
    """Every archiver_* name in the alert rules and the dashboard is a family served by a
    real receiver's ops listener or a real worker's metrics listener."""
    with serve_ops(settings) as (_public, ops):
        receiver = ops.get("/metrics").text
    worker = httpx.get(url_of(exporter[0]), timeout=10).text
    families = exported(receiver) | exported(worker)
    used = {
        name
        for expr in [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
        for name in METRIC_NAME.findall(expr)
    }
    assert len(used) >= 15
    assert sorted(name for name in used if family_of(name, families) is None) == []
    assert not exported(receiver).keys() & exported(worker).keys()  # nothing served twice


def balanced(expr: str) -> bool:
    """Brackets, braces and parentheses close in order (a cheap PromQL syntax check)."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_alert_rules_are_well_formed() -> None:
    """The required alerts exist, each with an expression, a severity and a summary."""
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert balanced(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0m"))


def test_dashboard_is_an_importable_model() -> None:
    """A Grafana dashboard model: a uid and title, panels placed on the grid, each with
    PromQL targets on the Prometheus data source asked for at import."""
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"]
    assert board["title"]
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert balanced(target["expr"]), target["expr"]
