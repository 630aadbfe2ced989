"""Smoke run of bench/ingest.py: a second of load on SQLite, checking the figure lines only.

No timing assertions: performance is measured by the benchmark itself, not by tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "ingest.py"
FIGURES = r"[\d,]+\.\d {unit}/s  p50 [\d.]+ ms  p99 [\d.]+ ms  max [\d.]+ ms  non-2xx 0"


def _quick_run(redis_url: str, loadgen: str) -> str:
    argv = [sys.executable, str(SCRIPT), "--quick", "--database", "sqlite"]
    argv += ["--loadgen", loadgen, "--connections", "8", "--redis-url", redis_url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("loadgen", ["python", "wrk"])
def test_quick_run_prints_the_figures(redis_url: str, loadgen: str) -> None:
    """A quick SQLite run names its load generator and prints rates, ratio and durability."""
    if loadgen == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    out = _quick_run(redis_url, loadgen)
    assert re.search(rf"load generator: {loadgen}.*8 connections; body 1,\d{{3}} bytes", out)
    assert re.search(r"^  bare starlette : " + FIGURES.format(unit="requests"), out, re.M)
    assert re.search(r"^  archiver serve : " + FIGURES.format(unit="deliveries"), out, re.M)
    assert re.search(r"^  ratio to bare: \d+\.\d %$", out, re.M)
    durable = re.search(r"durable rows in webhook_delivery: ([\d,]+) new for ([\d,]+) 2xx", out)
    assert durable, out
    rows, ok = (int(n.replace(",", "")) for n in durable.groups())
    assert ok > 0
    # The asyncio generator drains at its deadline; wrk abandons up to one request a connection.
    assert rows == ok if loadgen == "python" else ok <= rows <= ok + 8
    assert "every 2xx has a durable row" in out
    assert re.search(r"slowest receiver answer: [\d.]+ ms: ", out)
    assert "targets (sqlite): all answers 2xx: PASS" in out
