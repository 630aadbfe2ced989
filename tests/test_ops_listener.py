"""The ops listener: /metrics and detailed readiness off the public port, and readiness that
says what the receiver needs to accept deliveries (database: required; Redis: degraded)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.servers import free_port, wait_until
from tests.test_cli import env_for, healthy, start, stop
from tests.test_receiver import serve_ops

CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_metrics_are_only_on_the_ops_listener(sqlite_url: str, redis_url: str) -> None:
    """/metrics is 404 on the public port and 200 on the ops listener, both stores up."""
    with serve_ops(make_settings(sqlite_url, redis_url)) as (public, ops):
        hidden, shown = public.get("/metrics"), ops.get("/metrics")
        healthz = ops.get("/healthz")
    assert hidden.status_code == 404
    assert shown.status_code == 200
    assert 'archiver_store_up{store="database"} 1' in shown.text
    assert 'archiver_store_up{store="redis"} 1' in shown.text
    assert (healthz.status_code, healthz.text) == (200, "ok")


def test_redis_down_is_degraded_not_unready(sqlite_url: str) -> None:
    """Redis unreachable: 200 "degraded" on both ports, the ops one naming Redis, its gauge 0."""
    with serve_ops(make_settings(sqlite_url, CLOSED_REDIS)) as (public, ops):
        short, detail, metrics = public.get("/readyz"), ops.get("/readyz"), ops.get("/metrics")
    assert (short.status_code, short.text) == (200, "degraded")
    assert detail.status_code == 200
    assert detail.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "unavailable"},
        "failed": ["redis"],
    }
    assert 'archiver_store_up{store="redis"} 0' in metrics.text
    assert 'archiver_store_up{store="database"} 1' in metrics.text


def test_database_down_is_unavailable(tmp_path: Path, redis_url: str) -> None:
    """The database unreachable: 503 "unavailable" on both ports; the public one says no more."""
    missing = f"sqlite:///{tmp_path}/missing/dir/x.db"
    with serve_ops(make_settings(missing, redis_url)) as (public, ops):
        short, detail, metrics = public.get("/readyz"), ops.get("/readyz"), ops.get("/metrics")
    assert (short.status_code, short.text) == (503, "unavailable")
    assert detail.status_code == 503
    assert detail.json()["failed"] == ["database"]
    assert 'archiver_store_up{store="database"} 0' in metrics.text


def test_archiver_serve_runs_the_ops_listener(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """`archiver serve` announces both listeners, /metrics only on METRICS_PORT; exits 0 on TERM."""
    port, ops_port = free_port(), free_port()
    env = env_for(sqlite_url, redis_url, METRICS_PORT=str(ops_port))
    proc = start(["serve", "--port", str(port)], env, tmp_path)
    url, ops_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
    try:
        wait_until(lambda: healthy(ops_url) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        public_metrics = httpx.get(f"{url}/metrics", timeout=5).status_code
        ops_metrics = httpx.get(f"{ops_url}/metrics", timeout=5).status_code
    finally:
        status = stop(proc)
    assert (public_metrics, ops_metrics) == (404, 200)
    assert status == 0, (tmp_path / "stderr.txt").read_text()
    assert f"ops listener (/metrics, /readyz) on {ops_url}" in (tmp_path / "stdout.txt").read_text()


def test_a_taken_metrics_port_stops_serve_with_a_hint(
    sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """METRICS_PORT already in use: `archiver serve` exits non-zero and says how to fix it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ops_port = taken.getsockname()[1]
        env = env_for(sqlite_url, redis_url, METRICS_PORT=str(ops_port))
        proc = start(["serve", "--port", str(free_port())], env, tmp_path)
        try:
            status = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise
    assert status != 0
    assert (
        "the ops listener could not start (METRICS_PORT in use?"
        in (tmp_path / "stderr.txt").read_text()
    )
