"""`archiver status`: what is being captured, coverage, failures, token expiry.

The figures come from the database (reports.coverage) and, for throttle pauses and failed jobs,
from Redis (reports.pauses); the `--json` document and the text report are built in
archiver/status/. Tokens are never read, and the whole report goes through the one scrubber
(core.redaction) before it is printed, so a token Meta quoted in an error, even one stored
before errors were scrubbed on the way in, is never shown.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database

if TYPE_CHECKING:
    from archiver.commands import SubParsers
    from core.config import Settings


def register(subparsers: SubParsers) -> None:
    status = add_command(
        subparsers,
        "status",
        help_text="what is being captured: coverage, failures, token expiry",
        description="Per account: state, token expiry (Facebook Login: `never` or a date, and "
        "the data-access expiry; Instagram Login: also the last refresh), last story poll and "
        "how long it is overdue, the problem and failure count of an error retrying cannot fix, "
        "stories seen / captured before expiry / missed (by reason) / live, snapshots, throttle "
        "pauses (from REDIS_URL when reachable), the last error and its age, and the stories or "
        "posts still being captured that are overdue or failed (the first few, with a count of "
        "the rest); with a linked Threads profile also its link, token state and expiry, polls "
        "(overdue, problem), posts tracked / done / skipped / deleted, Threads snapshots and the "
        "metrics Meta refused; then totals, problems over all accounts, app-wide pauses, failed "
        "jobs and the webhook deliveries by status; last, the notices to operators (pending, "
        "undeliverable, delivered, and the latest not delivered with their errors). Tokens "
        "are never shown.",
    )
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from archiver.logs import known_secrets
    from archiver.status.as_json import as_json
    from archiver.status.as_text import as_text, plaintext_line
    from archiver.status.notices import notices_json, notices_lines
    from core.redaction import scrub, scrub_json
    from models.types import utcnow
    from reports.coverage import account_statuses, delivery_counts
    from reports.notices import notice_report
    from reports.overdue import overdue_grace
    from reports.pauses import read_pauses
    from store.token_keys import plaintext_count

    now = utcnow()
    engine = open_database(settings)
    try:
        grace = overdue_grace(settings.schedule_tick_seconds)
        accounts = account_statuses(engine, now=now, grace=grace)
        deliveries = delivery_counts(engine)
        plaintext = plaintext_count(engine)
        notices = notice_report(engine)
    finally:
        engine.dispose()
    pauses = read_pauses(settings.redis_url, [account.ig_user_id for account in accounts])
    secrets = known_secrets(settings)  # the whole report is scrubbed, rows from before too
    notify = settings.notify_webhook_url is not None
    if args.json:
        report = as_json(accounts, deliveries, pauses, now)
        report["tokens"] = {"plaintext": plaintext, "key_set": settings.token_key is not None}
        report["notices"] = notices_json(notices, enabled=notify)
        print(json.dumps(scrub_json(report, secrets), indent=2, default=datetime.isoformat))
    else:
        print(scrub(as_text(accounts, deliveries, pauses, now), secrets))
        print(scrub("\n".join(notices_lines(notices, enabled=notify, now=now)), secrets))
        if plaintext:
            print(plaintext_line(plaintext, keyed=settings.token_key is not None))
    return 0
