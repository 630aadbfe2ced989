"""`archiver accounts backfill --media-since DATE`: list an account's feed posts and Reels back
to DATE (the /media edge, newest first), with a progress bar, and store the ones not known yet,
each due a first capture at once (the workers' tick takes them from there, then the decaying
schedule: IG_MEDIA_SNAPSHOTS, monthly until IG_MEDIA_MAX_AGE).

Every page is committed as it comes, so an error or Ctrl+C keeps what was found and running
the command again adds only what is still missing. Imported inside the command handler, so
`archiver --help` never loads the workers.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import IO

from sqlalchemy.engine import Engine

from archiver.progress import ProgressBar
from archiver.threads_meta import explain, open_clients
from core.config import Settings
from core.errors import ArchiverError
from models.accounts import Account
from store.story_bookkeeping import flag_reauth
from workers.captures.media_listing import backfill_media
from workers.meta.api_errors import AuthError, MetaError


def since_of(day: date) -> datetime:
    """The start (00:00 UTC) of the --media-since day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def _backfill(
    settings: Settings, engine: Engine, account: Account, since: datetime, bar: ProgressBar
) -> int:
    async with open_clients(settings) as clients:
        return await backfill_media(
            engine=engine, client=clients.graph, account=account, since=since, progress=bar.update
        )


def run_media_backfill(
    settings: Settings,
    engine: Engine,
    account: Account,
    day: date,
    *,
    stream: IO[str] | None = None,
) -> int:
    """The listing with its bar (days covered of the range); prints a summary and returns
    the media added."""
    label = f"feed posts and Reels of {account.name} since {day}"
    bar = ProgressBar(label, stream=stream, unit="days", counted="new media")
    try:
        added = asyncio.run(_backfill(settings, engine, account, since_of(day), bar))
    except MetaError as exc:
        bar.close()
        raise _stopped(exc, engine, account, day) from exc
    bar.close()
    print(f"backfilled feed posts and Reels since {day}: {added} new, the workers capture them")
    return added


def _stopped(exc: MetaError, engine: Engine, account: Account, day: date) -> ArchiverError:
    """The line for a backfill Meta stopped; a refused token flags the account, as a listing
    would. What was stored stays."""
    assert account.id is not None
    exc.redact(account.ig_token)
    if isinstance(exc, AuthError):
        flag_reauth(engine, account_id=account.id, reason=f"media backfill: {exc}")
    what = f"the media backfill of account {account.name!r} stopped (media found so far are kept)"
    retry = f"; `archiver accounts backfill --id {account.id} --media-since {day}` resumes"
    renew = f"; give a new token with `archiver accounts update --id {account.id}`"
    return explain(exc, what, renew=renew, retry=retry)
