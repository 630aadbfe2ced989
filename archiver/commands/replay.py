"""`archiver replay`: run archived webhook deliveries through processing again.

The archive keeps every signed body, so a delivery for an account registered too late
(`unrouted`) or one that hit a bug (`failed`) is not lost: replay it once the cause is fixed.
Processing is idempotent, so replaying a delivery twice records nothing twice.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from core.errors import NotFoundError, StoreUnavailable
from models.tables import table_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from archiver.commands import SubParsers
    from core.config import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY = 1.0  # seconds between progress lines on stderr


def iso_timestamp(value: str) -> datetime:
    """argparse type: an ISO 8601 time; without a zone it is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        msg = f"invalid ISO8601 timestamp {value!r} (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)"
        raise argparse.ArgumentTypeError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def delivery_id(value: str) -> int:
    """argparse type: a delivery id, a positive integer."""
    if not value.isdigit() or int(value) < 1:
        msg = f"invalid delivery id {value!r} (a positive integer)"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def register(subparsers: SubParsers) -> None:
    replay = add_command(
        subparsers,
        "replay",
        help_text="re-process archived webhook deliveries",
        description="Re-process archived deliveries in this process: by default those left "
        "unrouted (account not registered then) or failed; with --since every delivery "
        "received since then; with --event one delivery.",
    )
    which = replay.add_mutually_exclusive_group()
    which.add_argument(
        "--since", type=iso_timestamp, metavar="ISO8601", help="every delivery received since"
    )
    which.add_argument("--event", type=delivery_id, metavar="ID", help="one delivery, by id")
    replay.set_defaults(handler=run_replay)


def select_deliveries(engine: Engine, *, since: datetime | None, event: int | None) -> list[int]:
    """Ids to replay, oldest first."""
    import sqlalchemy as sa

    from models.deliveries import FAILED, UNROUTED, WebhookDelivery

    table = table_of(WebhookDelivery)
    stmt = sa.select(table.c.id).order_by(table.c.id)
    if event is not None:
        stmt = stmt.where(table.c.id == event)
    elif since is not None:
        stmt = stmt.where(table.c.received_at >= since)
    else:
        stmt = stmt.where(table.c.status.in_((UNROUTED, FAILED)))
    with engine.connect() as conn:
        ids = [int(row[0]) for row in conn.execute(stmt)]
    if event is not None and not ids:
        msg = f"no webhook delivery with id {event}"
        raise NotFoundError(msg)
    return ids


def replay_one(engine: Engine, delivery: int) -> str:
    """The status processing left the delivery in; a raised error is logged, not fatal.

    Processing records its own failures (status `failed`, error and traceback on the row).
    """
    from models.deliveries import FAILED
    from workers.webhooks.process import process_delivery_sync

    try:
        return process_delivery_sync(engine=engine, delivery_id=delivery)
    except StoreUnavailable:
        raise  # the next one would fail too
    except Exception as exc:  # one bad delivery must not stop the rest of the replay
        log.warning("delivery %d failed again: %s: %s", delivery, type(exc).__name__, exc)
        log.debug("replay of delivery %d failed", delivery, exc_info=True)
        return FAILED


def summary(counts: Counter[str]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    return f"replayed {total} deliver{'y' if total == 1 else 'ies'}: {parts}"


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    from models.deliveries import FAILED

    engine = open_database(settings)
    try:
        ids = select_deliveries(engine, since=args.since, event=args.event)
        if not ids:
            what = "unrouted or failed deliveries"
            if args.since is not None:
                what = f"deliveries received since {args.since.isoformat()}"
            print(f"nothing to replay: no {what}")
            return 0
        counts: Counter[str] = Counter()
        last = time.monotonic()
        for done, delivery in enumerate(ids, start=1):
            counts[replay_one(engine, delivery)] += 1
            if done == len(ids) or time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                print(f"replayed {done}/{len(ids)}", file=sys.stderr, flush=True)
    finally:
        engine.dispose()
    print(summary(counts))
    return 1 if counts[FAILED] else 0  # scripts can tell that something still needs a fix
