"""`archiver prune`: which versions thinning keeps, raw answers dropped by age (whole months on
PostgreSQL), the views' answers unchanged, dry runs that change nothing, and the command line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from archiver.cli import main
from archiver.retention.raw_answers import prune_raw
from archiver.retention.rules import Thinning, Version, to_delete
from archiver.retention.thinning import thin
from core.config import Settings, get_settings
from core.errors import StoreUnavailable
from models.accounts import Account
from models.db import create_db_engine, session_scope
from models.partitions import month_of, partition_name, partitions
from models.snapshots import Media
from store.recording import MetricRow, Subject, record_snapshot

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# 01:00 UTC forty days ago: six-hour windows then start at 00:00, 06:00, 12:00 and 18:00.
P = (NOW - timedelta(days=40)).replace(hour=1)
RECENT = NOW - timedelta(days=10)
THINNING = Thinning(NOW - timedelta(days=20), timedelta(hours=6))
H = timedelta(hours=1)
API_KEYS = ("reach", "views")
VIEWS = ("story_final", "story_latest", "media_latest", "threads_post_latest", "threads_user_daily")


@dataclass(frozen=True)
class Archive:
    engine: Engine
    subjects: dict[str, Subject]


def _account(engine: Engine) -> int:
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken1")
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def _media(engine: Engine, subject: Subject, state: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        session.add(
            Media(
                account_id=subject.account_id,
                platform=subject.platform,
                subject_type=subject.subject_type,
                media_id=subject.subject_id,
                posted_at=P,
                capture_state=state,
                **fields,
            )
        )


def _capture(
    engine: Engine,
    subject: Subject,
    slot: str,
    at: datetime,
    keys: tuple[str, ...] = API_KEYS,
    source: str = "api",
) -> int:
    rows = [MetricRow(key, float(i + at.hour)) for i, key in enumerate(keys)]
    with session_scope(engine) as session:
        recorded, created = record_snapshot(
            session=session, subject=subject, slot=slot, source=source, metrics=rows,
            raw={"data": [{"name": key, "title": "t"} for key in keys]}, captured_at=at,
        )  # fmt: skip
    assert created
    return recorded.id


def _story(engine: Engine, subject: Subject, hours: int, state: str) -> None:
    """A story posted at P: `first`, then hourly slots; with `final_captured`, a final."""
    _media(engine, subject, state, expires_at=P + 24 * H)
    _capture(engine, subject, "first", P)
    for hour in range(1, hours + 1):
        _capture(engine, subject, f"h{hour}", P + hour * H)
    if state == "final_captured":
        final = _capture(engine, subject, "final", P + 23 * H + timedelta(minutes=50))
        with session_scope(engine) as session:
            session.execute(
                sa.update(Media)
                .where(Media.media_id == subject.subject_id)  # type: ignore[arg-type]
                .values(final_snapshot_id=final)
            )
    if state != "live":
        _capture(engine, subject, "webhook", P + 24 * H, ("impressions", "reach"), "webhook")


def build(engine: Engine) -> Archive:
    """Two expired stories (one with its final, one missed), a live one stuck since P, a feed
    post, a Threads post and a Threads user, all captured forty days ago."""
    account = _account(engine)
    subjects = {
        "story": Subject(account, "instagram", "story", "S1"),
        "missed": Subject(account, "instagram", "story", "S2"),
        "live": Subject(account, "instagram", "story", "S3"),
        "feed": Subject(account, "instagram", "feed", "F1"),
        "post": Subject(account, "threads", "threads_post", "T1"),
        "user": Subject(account, "threads", "threads_user", "U1"),
    }
    _story(engine, subjects["story"], 22, "final_captured")  # v1-v23 hourly, v24 final, v25 hook
    _story(engine, subjects["missed"], 19, "missed")  # v1-v20 hourly, v21 webhook
    _story(engine, subjects["live"], 9, "live")
    feed = subjects["feed"]
    _media(engine, feed, "tracked")
    for at, keys in (
        (P, API_KEYS),
        (P + H / 2, (*API_KEYS, "saved")),  # the newest holding `saved`
        (P + H, API_KEYS),
        (P + 2 * H, API_KEYS),
        (P + 6 * H, API_KEYS),
        (P + 7 * H, API_KEYS),
        (RECENT, API_KEYS),
    ):
        _capture(engine, feed, at.isoformat(), at, keys)
    post = subjects["post"]
    _media(engine, post, "tracked")
    for at in (P, P + H, P + 2 * H, RECENT):
        _capture(engine, post, at.isoformat(), at)
    for hour in range(8):
        _capture(engine, subjects["user"], f"u{hour}", P + hour * H, ("views",))
    return Archive(engine, subjects)


@pytest.fixture
def archive(engine: Engine) -> Archive:
    return build(engine)


def versions(engine: Engine, subject: Subject) -> list[int]:
    stmt = sa.text(
        "SELECT version FROM snapshot WHERE subject_id = :id AND subject_type = :type"
        " ORDER BY version"
    )
    with engine.connect() as conn:
        params = {"id": subject.subject_id, "type": subject.subject_type}
        return list(conn.execute(stmt, params).scalars())


def dump(engine: Engine) -> dict[str, list[str]]:
    """Every snapshot and raw row, and every row of the views thinning must not change."""
    found = {}
    with engine.connect() as conn:
        for name in ("snapshot", "snapshot_raw", *VIEWS):
            rows = conn.execute(sa.text(f"SELECT * FROM {name}"))
            found[name] = sorted(repr(tuple(row)) for row in rows)
    return found


def test_thinning_keeps_first_final_webhook_newest_and_one_per_window(archive: Archive) -> None:
    """Of the versions before the cutoff one per 6 h window stays, besides the ones kept for
    good; a live story and a Threads user are untouched; versions after the cutoff stay."""
    engine, subjects = archive.engine, archive.subjects
    live, user = versions(engine, subjects["live"]), versions(engine, subjects["user"])
    tallies = thin(engine, THINNING, dry_run=False)
    # first; 06:00, 12:00, 18:00 (first of their windows); final; webhook (the newest)
    assert versions(engine, subjects["story"]) == [1, 6, 12, 18, 24, 25]
    # the last API capture before expiry (v20, what story_final shows of a missed final) fills
    # its window, so v18 and v19 go
    assert versions(engine, subjects["missed"]) == [1, 6, 12, 20, 21]
    # v2 is the newest holding `saved`; v7 is after the cutoff
    assert versions(engine, subjects["feed"]) == [1, 2, 5, 7]
    assert versions(engine, subjects["post"]) == [1, 4]
    assert versions(engine, subjects["live"]) == live == list(range(1, 11))
    assert versions(engine, subjects["user"]) == user == list(range(1, 9))
    assert {name: (t.subjects, t.deleted, t.kept) for name, t in tallies.items()} == {
        "story": (2, 19 + 16, 11),
        "feed": (1, 3, 4),
        "reel": (0, 0, 0),
        "threads_post": (1, 2, 2),
    }
    with engine.connect() as conn:
        orphans = conn.execute(
            sa.text(
                "SELECT count(*) FROM snapshot_raw"
                " WHERE snapshot_id NOT IN (SELECT id FROM snapshot)"
            )
        ).scalar()
    assert orphans == 0  # thinned snapshots took their raw answers with them


def test_views_answer_the_same_after_thinning(archive: Archive) -> None:
    """story_final, the *_latest views and threads_user_daily read only versions kept."""
    before = dump(archive.engine)
    thin(archive.engine, THINNING, dry_run=False)
    after = dump(archive.engine)
    assert len(after["snapshot"]) < len(before["snapshot"])
    assert len(before["story_final"]) > 0
    for view in VIEWS:
        assert after[view] == before[view], view


def test_a_dry_run_changes_nothing_and_counts_the_same(archive: Archive) -> None:
    """--dry-run reads the same rows: same tallies as the real run, and no row changed."""
    with session_scope(archive.engine) as session:  # no live story holds the raw cutoff back
        session.execute(sa.update(Media).values(capture_state="missed"))
    before = dump(archive.engine)
    dry = thin(archive.engine, THINNING, dry_run=True)
    raw = prune_raw(archive.engine, NOW - timedelta(days=1), dry_run=True)
    assert dump(archive.engine) == before
    assert raw.rows > 0
    assert thin(archive.engine, THINNING, dry_run=False) == dry
    assert thin(archive.engine, THINNING, dry_run=False)["story"].deleted == 0  # idempotent


def test_a_capture_after_thinning_gets_a_new_version(archive: Archive) -> None:
    """The newest version is never deleted, so a capture running beside prune never reuses a
    version number."""
    thin(archive.engine, THINNING, dry_run=False)
    _capture(archive.engine, archive.subjects["feed"], "next", NOW)
    assert versions(archive.engine, archive.subjects["feed"]) == [1, 2, 5, 7, 8]


def test_raw_answers_stop_a_day_before_a_live_story(archive: Archive) -> None:
    """A live story (here stuck since P) keeps its raw answers: the cutoff moves before it."""
    before = _raw_ids(archive.engine)
    outcome = prune_raw(archive.engine, NOW - timedelta(days=20), dry_run=False)
    assert (outcome.cutoff, outcome.rows) == (P - timedelta(days=1), 0)
    assert _raw_ids(archive.engine) == before


def test_a_story_known_only_from_its_webhook_does_not_hold_raw_back(archive: Archive) -> None:
    """A webhook-only story (no expiry, `live` for good) seen before the cutoff is no live
    story to protect: the cutoff stays where the real live story puts it."""
    webhook_only = Subject(archive.subjects["live"].account_id, "instagram", "story", "S9")
    _media(archive.engine, webhook_only, "live", discovered_at=P - timedelta(days=5))
    outcome = prune_raw(archive.engine, NOW - timedelta(days=20), dry_run=True)
    assert outcome.cutoff == P - timedelta(days=1)
    with session_scope(archive.engine) as session:  # the real live story closes
        session.execute(
            sa.update(Media)
            .where(Media.media_id == "S3")  # type: ignore[arg-type]
            .values(capture_state="missed")
        )
    assert prune_raw(archive.engine, NOW - timedelta(days=20), dry_run=True).cutoff == (
        NOW - timedelta(days=20)
    )


def test_a_month_held_by_a_reader_is_left_for_the_next_run(pg: Engine) -> None:
    """Dropping a month waits at most lock_timeout behind a reader of snapshot_raw, then stops
    with a StoreUnavailable that says to run again, leaving every row; the next run drops it."""
    feed = Subject(_account(pg), "instagram", "feed", "F8")
    _media(pg, feed, "tracked")
    old = _capture(pg, feed, "old", NOW - timedelta(days=100))
    cutoff = NOW - timedelta(days=30)
    with pg.connect() as reader:
        reader.begin()
        reader.execute(sa.text("SELECT count(*) FROM snapshot_raw"))  # holds ACCESS SHARE
        with pytest.raises(StoreUnavailable, match="run `archiver prune` again"):
            prune_raw(pg, cutoff, dry_run=False, lock_timeout="200ms")
        reader.rollback()
    assert old in _raw_ids(pg)
    done = prune_raw(pg, cutoff, dry_run=False)
    assert partition_name("snapshot_raw", month_of(NOW - timedelta(days=100))) in done.partitions
    assert old not in _raw_ids(pg)


def test_raw_answers_go_by_age_and_whole_months_are_dropped(engine: Engine) -> None:
    """Raw rows older than the cutoff go (PostgreSQL: their whole month dropped), the values
    stay; the dry run before said the same and changed nothing."""
    feed = Subject(_account(engine), "instagram", "feed", "F9")
    _media(engine, feed, "tracked")
    ids = [_capture(engine, feed, str(days), NOW - timedelta(days=days)) for days in (100, 45, 5)]
    cutoff = NOW - timedelta(days=30)
    old_month = partition_name("snapshot_raw", month_of(NOW - timedelta(days=100)))
    dry = prune_raw(engine, cutoff, dry_run=True)
    assert (dry.rows, _raw_ids(engine)) == (2, ids)
    done = prune_raw(engine, cutoff, dry_run=False)
    assert (done.rows, done.partitions) == (dry.rows, dry.partitions)
    assert _raw_ids(engine) == ids[2:]
    assert versions(engine, feed) == [1, 2, 3]
    if engine.dialect.name == "postgresql":
        assert old_month in done.partitions
        with engine.connect() as conn:
            assert old_month not in {p.name for p in partitions(conn, "snapshot_raw")}
            kept = {p.name for p in partitions(conn, "snapshot")}
        assert partition_name("snapshot", month_of(NOW - timedelta(days=100))) in kept
        _capture(engine, feed, "late", NOW - timedelta(days=100))  # the month comes back
    assert prune_raw(engine, cutoff, dry_run=False).rows == int(engine.dialect.name == "postgresql")


def _raw_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        stmt = sa.text("SELECT snapshot_id FROM snapshot_raw ORDER BY snapshot_id")
        return list(conn.execute(stmt).scalars())


def test_the_rules_alone() -> None:
    """Pure rules: a version already kept fills its window; after the cutoff nothing goes."""
    at = [P + i * H for i in range(9)]
    mine = [Version(i + 1, i + 1, f"s{i}", "api", t, (1,)) for i, t in enumerate(at)]
    going = to_delete(mine, Thinning(P + 7 * H, timedelta(hours=3)))
    # 3 h windows from 00:00: [00-03) v1 (first) v2, [03-06) v3-v5, [06-09) v6 v7 and v8, at
    # the cutoff, so kept; v9, the newest, alone in [09-12)
    assert [v.version for v in going] == [2, 4, 5, 7]


# --- the command line ---------------------------------------------------------------------------

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """`archiver prune ARGS` in this process with exactly the given PRUNE_* environment."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def prune(url: str, *args: str, **env: str) -> tuple[int, str, str]:
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        for name, value in {"DATABASE_URL": url, **env}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        code = main(["prune", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield prune
    get_settings.cache_clear()
    root.handlers[:] = handlers  # main() installs its own stderr handler
    root.setLevel(level)


def test_cli_without_settings_or_flags_refuses(run: Run, sqlite_url: str) -> None:
    """Retention is opt-in: nothing set, one line saying so and exit 2; a bad flag exits 2."""
    code, out, err = run(sqlite_url)
    assert (code, out) == (2, "")
    assert err.startswith("archiver: error: nothing to prune:")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        run(sqlite_url, "--thin-after", "0")
    assert exc.value.code == 2


def test_cli_dry_run_then_prune_from_settings(run: Run, sqlite_url: str) -> None:
    """--dry-run prints what would go and changes nothing; the settings then prune it."""
    engine = create_db_engine(sqlite_url)
    build(engine)
    before = dump(engine)
    flags = ("--thin-after", "20", "--spacing", "6", "--raw-after", "2", "--dry-run")
    code, out, err = run(sqlite_url, *flags)
    assert code == 0
    assert "  story         would delete 35 versions, kept 11 (2 subjects)" in out
    assert "raw answers captured before" in out
    assert out.rstrip().endswith("dry run: nothing was changed")
    assert "thinning [" in err
    assert dump(engine) == before
    code, out, _ = run(sqlite_url, PRUNE_THIN_AFTER_DAYS="20", PRUNE_THIN_SPACING_HOURS="6")
    assert code == 0
    assert "  story         deleted 35 versions, kept 11 (2 subjects)" in out
    assert "threads_user, ig_account: never thinned" in out
    assert "raw answers" not in out
    assert versions(engine, Subject(1, "instagram", "story", "S1")) == [1, 6, 12, 18, 24, 25]
    engine.dispose()
