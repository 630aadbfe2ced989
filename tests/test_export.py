"""`archiver export` and the export package: every format round-trips the views' rows (names,
nulls, flags, UTC timestamps), filters, errors, one batch held at a time, and the command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import NotFoundError
from export.parquet import MISSING, ParquetUnavailable, require_pyarrow, write_parquet
from export.query import SPECS, VIEWS, ExportQuery, InvalidExport, Kind
from export.stream import batches
from export.writers import media_type, write_csv, write_export, write_jsonl
from models.accounts import Account
from models.db import create_db_engine, session_scope
from models.snapshots import Media
from models.views import (
    IG_ACCOUNT_DAILY_COLUMNS,
    IG_ACCOUNT_DEMOGRAPHICS_COLUMNS,
    MEDIA_LATEST_COLUMNS,
    METRIC_HISTORY_COLUMNS,
    STORY_FINAL_COLUMNS,
    STORY_LATEST_COLUMNS,
    THREADS_POST_LATEST_COLUMNS,
    THREADS_USER_DAILY_COLUMNS,
)
from store.recording import BELOW_THRESHOLD, MetricRow, Subject, record_snapshot
from tests.test_cli import env_for

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
STORY, OTHER_STORY, POST, THREADS_USER = "17900000000000001", "17900000000000002", "1801", "63"
REEL = "17900000000000003"
NAV = "story_navigation_action_type"
COLUMNS = {
    "metric_history": METRIC_HISTORY_COLUMNS,
    "story_latest": STORY_LATEST_COLUMNS,
    "story_final": STORY_FINAL_COLUMNS,
    "threads_user_daily": THREADS_USER_DAILY_COLUMNS,
    "threads_post_latest": THREADS_POST_LATEST_COLUMNS,
    "ig_account_daily": IG_ACCOUNT_DAILY_COLUMNS,
    "ig_account_demographics": IG_ACCOUNT_DEMOGRAPHICS_COLUMNS,
    "media_latest": MEDIA_LATEST_COLUMNS,
}


def _media(account_id: int, platform: str, subject_type: str, media_id: str) -> Media:
    return Media(
        account_id=account_id,
        platform=platform,
        subject_type=subject_type,
        media_id=media_id,
        posted_at=T0,
        expires_at=T0 + DAY if platform == "instagram" else None,
        capture_state="final_captured" if platform == "instagram" else "tracked",
    )


def _capture(
    session: Any, subject: Subject, slot: str, at: timedelta, rows: list[MetricRow]
) -> None:
    source = "webhook" if slot == "webhook" else "api"
    _, created = record_snapshot(
        session=session, subject=subject, slot=slot, source=source, metrics=rows,
        captured_at=T0 + at,
    )  # fmt: skip
    assert created


@pytest.fixture
def archive(engine: Engine) -> Engine:
    """Two accounts: a story (API, then webhook), a Threads user and post, a Reel; another
    story."""
    with session_scope(engine) as session:
        shop, other = (
            Account(name="shop", ig_user_id="1784", ig_token="EAAtoken1"),
            Account(name="other", ig_user_id="1785", ig_token="EAAtoken2"),
        )
        session.add_all([shop, other])
        session.flush()
        assert shop.id is not None
        assert other.id is not None
        session.add_all([_media(shop.id, "instagram", "story", STORY),
                         _media(other.id, "instagram", "story", OTHER_STORY),
                         _media(shop.id, "threads", "threads_post", POST),
                         _media(shop.id, "instagram", "reel", REEL)])  # fmt: skip
        story = Subject(shop.id, "instagram", "story", STORY)
        _capture(session, story, "first", timedelta(minutes=1), [
            MetricRow("views", 9), MetricRow("reach", None, flag=BELOW_THRESHOLD),
            MetricRow("navigation", 2, breakdown=NAV, dimension="tap_forward")])  # fmt: skip
        _capture(session, story, "webhook", DAY, [MetricRow("reach", 85)])
        user = Subject(shop.id, "threads", "threads_user", THREADS_USER)
        daily = [MetricRow("views", 40, end_time=T0 + DAY), MetricRow("followers_count", 12)]
        _capture(session, user, "u1", 2 * DAY, daily)
        _capture(session, Subject(shop.id, "threads", "threads_post", POST), "p1",
                 timedelta(hours=1), [MetricRow("views", 1.5)])  # fmt: skip
        _capture(session, Subject(shop.id, "instagram", "reel", REEL), "first",
                 timedelta(hours=5), [MetricRow("likes", 4)])  # fmt: skip
        _capture(session, Subject(other.id, "instagram", "story", OTHER_STORY), "first",
                 timedelta(hours=3), [MetricRow("views", 3)])  # fmt: skip
        ig = Subject(shop.id, "instagram", "ig_account", "1784")
        _capture(session, ig, "run:1", 3 * DAY, [MetricRow("reach", 70, end_time=T0 + DAY)])
        ages = Subject(shop.id, "instagram", "ig_account", "1784", "demographics")
        _capture(session, ages, "day:1", 3 * DAY, [MetricRow("follower_demographics", 5, "age")])
    return engine


def export(engine: Engine, fmt: str, **query: Any) -> bytes:
    out = io.BytesIO()
    written = write_export(engine, ExportQuery(**query), fmt, out)
    data = out.getvalue()
    assert written == len(read(fmt, data))
    return data


def read(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return pq.read_table(io.BytesIO(data)).to_pylist()  # type: ignore[no-any-return]


def by_metric(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows by (subject, metric), the first (lowest snapshot) of each kept."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = row.get("subject_id") or row.get("threads_user_id") or row["media_id"]
        found.setdefault((key, row["metric"]), row)
    return found


def test_csv_keeps_names_nulls_flags_and_utc_times(archive: Engine) -> None:
    """CSV: the view's header, empty fields for nulls, the flag, ISO 8601 UTC, plain numbers."""
    data = export(archive, "csv")
    assert data.splitlines()[0].decode() == ",".join(METRIC_HISTORY_COLUMNS)
    rows = by_metric(read("csv", data))
    reach = rows[STORY, "reach"]  # the API's withheld value; the webhook's 85 is a later row
    assert (reach["value"], reach["flag"], reach["end_time"]) == ("", BELOW_THRESHOLD, "")
    views = rows[STORY, "views"]
    assert views["value"] == "9"
    assert datetime.fromisoformat(views["captured_at"]) == T0 + timedelta(minutes=1)
    assert views["captured_at"].endswith("+00:00")
    assert rows[POST, "views"]["value"] == "1.5"


def test_jsonl_keeps_nulls_as_null_and_numbers_as_numbers(archive: Engine) -> None:
    """JSON lines: keys in the view's order, null for withheld values, numbers unquoted."""
    records = read("jsonl", export(archive, "jsonl"))
    assert all(tuple(record) == METRIC_HISTORY_COLUMNS for record in records)
    rows = by_metric(records)
    assert rows[STORY, "reach"]["value"] is None
    assert rows[STORY, "reach"]["flag"] == BELOW_THRESHOLD
    assert rows[STORY, "views"]["value"] == 9
    assert rows[STORY, "views"]["version"] == 1
    assert datetime.fromisoformat(rows[THREADS_USER, "views"]["end_time"]) == T0 + DAY


def test_parquet_columns_are_typed(archive: Engine) -> None:
    """Parquet: timestamp[us, UTC], int64 ids, float64 values, strings; nulls are nulls."""
    table = pq.read_table(io.BytesIO(export(archive, "parquet")))
    assert tuple(table.schema.names) == METRIC_HISTORY_COLUMNS
    assert table.schema.field("captured_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("snapshot_id").type == pa.int64()
    assert table.schema.field("value").type == pa.float64()
    assert table.schema.field("flag").type == pa.string()
    rows = by_metric(table.to_pylist())
    assert rows[STORY, "reach"]["value"] is None
    assert rows[STORY, "views"]["captured_at"] == T0 + timedelta(minutes=1)
    assert rows[POST, "views"]["value"] == 1.5


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_exports_all_its_rows_under_its_own_names(archive: Engine, view: str) -> None:
    """Each documented view: its column names in order, as many rows as the view holds."""
    assert SPECS[view].names == COLUMNS[view]
    records = read("jsonl", export(archive, "jsonl", view=view))
    with archive.connect() as conn:
        count = conn.execute(sa.text(f"SELECT count(*) FROM {view}")).scalar_one()
    assert count > 0
    assert len(records) == count
    assert all(tuple(record) == COLUMNS[view] for record in records)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"account": "other"}, {(OTHER_STORY, "views")}),
        ({"account": "2"}, {(OTHER_STORY, "views")}),
        ({"platform": "threads", "metric": ("views",)}, {(THREADS_USER, "views"), (POST, "views")}),
        ({"subject_type": "threads_user", "metrics": ("followers_count",)},
         {(THREADS_USER, "followers_count")}),
        ({"since": T0 + DAY, "until": T0 + 2 * DAY}, {(STORY, "reach")}),
        ({"subject_id": POST}, {(POST, "views")}),
    ],
)  # fmt: skip
def test_filters(archive: Engine, query: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    """Account by name or id, platform, subject type, metrics, time window, one subject."""
    query = {("metrics" if key == "metric" else key): value for key, value in query.items()}
    assert set(by_metric(read("jsonl", export(archive, "jsonl", **query)))) == expected


def test_daily_view_filters_by_utc_day(archive: Engine) -> None:
    """threads_user_daily compares --since/--until with its `day` column, as dates."""
    nov1 = {"view": "threads_user_daily", "since": T0, "until": T0 + DAY}
    assert [row["metric"] for row in read("csv", export(archive, "csv", **nov1))] == ["views"]
    nov3 = {"view": "threads_user_daily", "since": T0 + 2 * DAY}
    assert [row["day"] for row in read("csv", export(archive, "csv", **nov3))] == ["2026-11-03"]


@pytest.mark.parametrize(
    ("query", "fmt", "error", "message"),
    [
        ({"view": "story_latest", "platform": "threads"}, "csv", InvalidExport, "holds instagram"),
        ({"view": "threads_user_daily", "subject_type": "story"}, "csv", InvalidExport, "holds"),
        ({"view": "snapshot"}, "csv", InvalidExport, "exportable views: metric_history"),
        ({}, "xlsx", InvalidExport, "formats: csv, jsonl, parquet"),
        ({"account": "nobody"}, "csv", NotFoundError, "no account named or numbered 'nobody'"),
    ],
)
def test_bad_requests_fail_before_any_output(
    archive: Engine, query: dict[str, Any], fmt: str, error: type[Exception], message: str
) -> None:
    """A filter the view cannot answer, an unknown view, format or account: a clear error."""
    out = io.BytesIO()
    with pytest.raises(error, match=message):
        write_export(archive, ExportQuery(**query), fmt, out)
    assert out.getvalue() == b""


def test_a_matching_constant_filter_is_accepted(archive: Engine) -> None:
    """story_latest holds Instagram stories only: asking for them is no error."""
    rows = read("csv", export(archive, "csv", view="story_latest", platform="instagram"))
    assert {row["subject_id"] for row in rows} == {STORY, OTHER_STORY}


def test_media_types() -> None:
    assert media_type("csv") == "text/csv; charset=utf-8"
    assert media_type("parquet") == "application/vnd.apache.parquet"
    with pytest.raises(InvalidExport):
        media_type("xml")


def test_missing_pyarrow_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pyarrow, parquet names the extra to install (exit 2); nothing else needs it."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ParquetUnavailable) as caught:
        require_pyarrow()
    assert str(caught.value) == MISSING
    assert caught.value.exit_code == 2


class Counted:
    """Batches of `size` rows, counting how many have been handed out, and checking at each
    request that the writer wrote the previous batch out before asking for this one."""

    def __init__(self, out: io.BytesIO, batches: int, size: int) -> None:
        self.out, self.total, self.size = out, batches, size
        self.handed = 0
        self.sizes: list[int] = []  # bytes written when each batch was asked for

    def __iter__(self) -> Iterator[list[tuple[object, ...]]]:
        for n in range(self.total):
            self.sizes.append(self.out.getbuffer().nbytes)
            self.handed += 1
            yield [(n * self.size + i, T0, float(i), None) for i in range(self.size)]


ROW: tuple[tuple[str, Kind], ...] = (
    ("id", "int"),
    ("at", "timestamp"),
    ("value", "float"),
    ("flag", "text"),
)


@pytest.mark.parametrize("writer", [write_csv, write_jsonl, write_parquet])
def test_writers_hold_one_batch_at_a_time(writer: Any) -> None:
    """Each batch is written out before the next is asked for: memory holds one batch."""
    out = io.BytesIO()
    source = Counted(out, batches=5, size=200)
    seen: list[int] = []
    assert writer(ROW, source, out, seen.append) == 1000
    assert seen == [200, 400, 600, 800, 1000]  # progress after every batch
    grew = [after > before for before, after in zip(source.sizes, source.sizes[1:], strict=False)]
    assert grew == [True] * 4
    fmt = {write_csv: "csv", write_jsonl: "jsonl", write_parquet: "parquet"}[writer]
    assert len(read(fmt, out.getvalue())) == 1000


def test_parquet_writes_a_row_group_per_batch() -> None:
    out = io.BytesIO()
    write_parquet(ROW, Counted(out, batches=3, size=50), out)
    assert pq.ParquetFile(io.BytesIO(out.getvalue())).metadata.num_row_groups == 3


def test_the_database_is_read_in_batches(engine: Engine) -> None:
    """batches() hands the rows over `size` at a time (a server-side cursor on PostgreSQL)."""
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken1")
        session.add(account)
        session.flush()
        assert account.id is not None
        subject = Subject(account.id, "instagram", "story", STORY)
        rows = [MetricRow(f"m{i}", i) for i in range(250)]
        _capture(session, subject, "first", timedelta(0), rows)
    sizes = [len(batch) for batch in batches(engine, ExportQuery(), size=100)]
    assert sizes == [100, 100, 50]


def _cli(url: str, tmp_path: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", "export", *args],
        env=env_for(url), cwd=tmp_path, capture_output=True, timeout=60, check=False, **kwargs,
    )  # fmt: skip


def test_cli_to_a_pipe_and_to_a_file(archive: Engine, database_url: str, tmp_path: Path) -> None:
    """CSV to standard output (silent stderr in a pipe); Parquet to --output; filters apply."""
    piped = _cli(database_url, tmp_path, "--metric", "views", "--platform", "instagram")
    assert (piped.returncode, piped.stderr) == (0, b"")
    rows = read("csv", piped.stdout)
    assert {(row["subject_id"], row["value"]) for row in rows} == {(STORY, "9"), (OTHER_STORY, "3")}
    target = tmp_path / "out.parquet"
    done = _cli(database_url, tmp_path, "--format", "parquet", "-o", str(target), "--view",
                "story_final")  # fmt: skip
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", b"")
    final = read("jsonl", export(archive, "jsonl", view="story_final"))
    assert pq.read_table(target).to_pylist() == read(
        "parquet", export(archive, "parquet", view="story_final")
    )
    assert len(final) > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_cli_errors_are_one_line(archive: Engine, database_url: str, tmp_path: Path) -> None:
    """A filter the view lacks exits 2, an unknown account 3; no output file is left."""
    bad = _cli(database_url, tmp_path, "--view", "story_final", "--platform", "threads",
               "-o", str(tmp_path / "x.csv"))  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.decode().count("\n") == 1
    assert b"story_final cannot be filtered by platform 'threads'" in bad.stderr
    assert list(tmp_path.glob("x.csv*")) == list(tmp_path.glob(".x.csv*")) == []
    missing = _cli(database_url, tmp_path, "--account", "nobody")
    assert (missing.returncode, missing.stdout) == (3, b"")


def test_cli_stops_quietly_when_the_reader_leaves(sqlite_url: str, tmp_path: Path) -> None:
    """`archiver export | head -c 10`: the reader leaves mid-stream; exit 0, stderr silent."""
    engine = create_db_engine(sqlite_url)
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken1")
        session.add(account)
        session.flush()
        assert account.id is not None
        rows = [MetricRow(f"metric_{i}", i) for i in range(5000)]  # ~1 MB, beyond a pipe buffer
        _capture(session, Subject(account.id, "instagram", "story", STORY), "first", DAY, rows)
    engine.dispose()
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "export", "--format", "jsonl"],
        env=env_for(sqlite_url), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(10) == b'{"account_'
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()
