"""bench/archive.py's builder stores what the write path stores: a tiny archive built in bulk
(COPY / executemany) and the same archive built capture by capture through record_snapshot
hold the same snapshots, values, keys and raw bodies; and a --small run prints its figures."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from models.db import create_db_engine
from tests.conftest import PG_BASE_URL, _truncate_all

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(BENCH))
    try:
        names = ("archive_shapes", "archive_plan", "archive_write")
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def templates(bench: dict[str, ModuleType]) -> Any:
    shapes = bench["archive_shapes"].capture_shapes()
    return bench["archive_plan"].Templates.of(shapes)


def _plan(bench: dict[str, ModuleType]) -> Any:
    end = datetime(2026, 3, 2, 12, tzinfo=UTC)  # stories and posts cross a month boundary
    return bench["archive_plan"].Plan(
        accounts=2, stories_per_day=2, days=2, versions=5, end=end, webhook_every=2,
        post_versions=3, polls_per_day=2,
    )  # fmt: skip


# Key ids follow the order keys were first met (a batch adds its keys at once), so snapshots
# are compared by their keys' names: metric_history spells every value's key out in order.
_DUMPS = {
    "snapshot": "SELECT id, account_id, platform, subject_type, subject_id, kind, version, slot,"
    " captured_at, source, api_version, delivery_id, metric_values, end_times, flags"
    " FROM snapshot ORDER BY id",
    "snapshot_raw": "SELECT snapshot_id, captured_at, body FROM snapshot_raw ORDER BY snapshot_id",
    "metric_key": "SELECT metric, breakdown, dimension FROM metric_key"
    " ORDER BY metric, breakdown, dimension",
    "metric_history": "SELECT * FROM metric_history ORDER BY snapshot_id",
    "media": "SELECT media_id, final_snapshot_id FROM media ORDER BY media_id",
}


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        found = {
            name: [tuple(r) for r in conn.execute(sa.text(sql))] for name, sql in _DUMPS.items()
        }
    found["metric_history"].sort(key=repr)  # ties within a snapshot come in any order
    engine.dispose()
    return found


def _build(bench: dict[str, ModuleType], templates: Any, url: str, *, bulk: bool) -> int:
    engine = create_db_engine(url)
    try:
        return int(bench["archive_write"].build(engine, _plan(bench), templates, bulk=bulk))
    finally:
        engine.dispose()


def _fresh(url: str, tmp_path: Path) -> str:
    if url.startswith("sqlite"):
        path = tmp_path / "bulk.db"
        shutil.copy(url.removeprefix("sqlite:///"), path)
        return f"sqlite:///{path}"
    return url


def test_bulk_build_stores_what_record_snapshot_stores(
    bench: dict[str, ModuleType], templates: Any, database_url: str, tmp_path: Path
) -> None:
    """Every snapshot column, metric_history row, key, raw body and final id is the same."""
    empty = _fresh(database_url, tmp_path)  # a copy of the empty SQLite file, before use
    stored = _build(bench, templates, database_url, bulk=False)
    expected = _dump(database_url)
    if database_url.startswith("postgresql"):
        _truncate_all(database_url)
    assert _build(bench, templates, empty, bulk=True) == stored
    got = _dump(empty)
    assert stored == len(expected["snapshot"]) > 30
    assert {row[7] for row in expected["snapshot"]} >= {"webhook", "final", "first"}
    for name in _DUMPS:
        assert got[name] == expected[name], name


def test_small_run_prints_sizes_and_timings(tmp_path: Path) -> None:
    """A --small run builds, measures every query and prints the storage figures."""
    if not PG_BASE_URL.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    url = os.environ.get("TEST_POSTGRES_URL", PG_BASE_URL)
    schema = f"bench_archive_test_{os.getpid()}"
    argv = [sys.executable, str(BENCH / "archive.py"), "--small", "--postgres-url", url,
            "--schema", schema, "--drop", "--repeats", "1"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^bytes per snapshot +[\d,]+", proc.stdout, re.M), proc.stdout
    assert re.search(r"^  story_latest by account, 7 days +[\d.]+ ms", proc.stdout, re.M)
