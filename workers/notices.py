"""The notifier (control lane, a cron job beside the tick, never in its way): detect what
operators should hear about, record each event once (store.notices), and POST the due ones
to NOTIFY_WEBHOOK_URL as Slack-compatible JSON (README: Notices).

One POST per kind and account per run, however many events it holds (a burst of 300 missed
stories is one message, each story still its own row). A failed POST is retried with
exponential back-off; after NOTIFY_MAX_ATTEMPTS the notice is `undeliverable`, kept and shown
by `archiver status`. The first failure ends the run, and no new POST starts after
RUN_BUDGET, so a receiver that is down or hangs costs a run at most a timeout or two.
The URL is a secret: every error is scrubbed of it before it is logged or stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx

from core.config import Settings
from core.redaction import RedactingFilter, scrub
from models.types import utcnow
from store.notice_events import detect_events
from store.notices import Due, claim_due, mark_delivered, mark_failed, record_events, unclaim
from workers.runtime.context import Context, in_thread

log = logging.getLogger(__name__)

SEND_BATCH = 200  # notices per run; the rest at the next run
RUN_BUDGET = 30.0  # seconds; no POST starts later in a run
SHOWN_LINES = 10  # lines of a grouped message; the rest counted, all in `archiver.notices`
_ERROR_CHARS = 300


async def send_notices(ctx: Context) -> dict[str, int]:
    """The cron job: detect, record, send. Without NOTIFY_WEBHOOK_URL it does nothing."""
    settings: Settings = ctx["settings"]
    url = settings.notify_webhook_url
    if url is None:
        return {}
    engine, now = ctx["engine"], utcnow()
    events = await in_thread(
        ctx, detect_events, engine, now=now, token_days=settings.notify_token_days
    )
    added = await in_thread(ctx, record_events, engine, events, now=now)
    lease = timedelta(seconds=RUN_BUDGET + 2 * settings.notify_timeout_seconds)
    due = await in_thread(ctx, claim_due, engine, now=now, limit=SEND_BATCH, lease=lease)
    counts = {"added": added, "sent": 0, "failed": 0, "undeliverable": 0}
    if due:
        counts |= await _send(ctx, settings, url.get_secret_value(), due)
    if any(counts.values()):
        log.info("notices: %s", counts, extra=counts)
    return counts


async def _send(ctx: Context, settings: Settings, url: str, due: Sequence[Due]) -> dict[str, int]:
    """POST each group in turn until one fails or the run's budget is spent (the first
    group is always tried)."""
    secrets = settings.notify_secrets
    guard_httpx_log(secrets)
    counts = {"sent": 0, "failed": 0, "undeliverable": 0}
    started, groups = time.monotonic(), grouped(due)
    async with httpx.AsyncClient(timeout=settings.notify_timeout_seconds) as client:
        while groups and (counts["sent"] == 0 or time.monotonic() - started <= RUN_BUDGET):
            group = groups.pop(0)
            ids = [notice.id for notice in group]
            error = await post(client, url, payload(group), secrets=secrets)
            if error is None:
                await in_thread(ctx, mark_delivered, ctx["engine"], ids, now=utcnow())
                counts["sent"] += len(ids)
                continue
            counts["failed"] += len(ids)
            counts["undeliverable"] += await _failed(ctx, settings, group, error)
            break  # the receiver is failing: the rest wait for the next run
    if groups:
        rest = [notice.id for group in groups for notice in group]
        await in_thread(ctx, unclaim, ctx["engine"], rest, now=utcnow())
    return counts


async def _failed(ctx: Context, settings: Settings, group: Sequence[Due], error: str) -> int:
    """Record a failed POST for the group; returns how many notices it gave up on."""
    ids, tries = [notice.id for notice in group], group[0].attempts + 1
    given_up = await in_thread(
        ctx,
        mark_failed,
        ctx["engine"],
        ids,
        error=error,
        now=utcnow(),
        max_attempts=settings.notify_max_attempts,
    )
    log.warning("notice not delivered (try %d): %s", tries, error, extra={"notices": len(ids)})
    if given_up:
        log.error(
            "%d notices undeliverable after %d tries; kept (archiver status)", given_up, tries
        )
    return given_up


async def post(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], *, secrets: Sequence[str]
) -> str | None:
    """POST `body`; None on a 2xx, else why not (scrubbed of the URL and tokens)."""
    try:
        response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        return scrub(f"{type(exc).__name__}: {exc}", secrets)[:_ERROR_CHARS]
    if response.is_success:
        return None
    # Scrubbed whole, then cut: a cut first could leave part of the URL unrecognised.
    text = scrub(" ".join(response.text.split()), secrets)
    return f"HTTP {response.status_code}: {text}".rstrip(": ")[:_ERROR_CHARS]


def grouped(due: Sequence[Due]) -> list[list[Due]]:
    """The due notices by (kind, account), in the order their first one is due."""
    groups: dict[tuple[str, int | None], list[Due]] = {}
    for notice in due:
        groups.setdefault((notice.kind, notice.account_id), []).append(notice)
    return list(groups.values())


def payload(group: Sequence[Due]) -> dict[str, Any]:
    """Slack's incoming-webhook body (`text`, https://api.slack.com/messaging/webhooks) plus
    `archiver`, the same events as fields, for receivers that are not chat."""
    lines = [notice.text for notice in group[:SHOWN_LINES]]
    if len(group) > SHOWN_LINES:
        lines.append(f"... and {len(group) - SHOWN_LINES} more")
    head = (
        f"[archiver] {len(group)} {group[0].kind} notices:\n" if len(group) > 1 else "[archiver] "
    )
    return {
        "text": head + "\n".join(lines),
        "archiver": {
            "kind": group[0].kind,
            "account_id": group[0].account_id,
            "notices": [
                {"id": n.id, "text": n.text, "details": n.details, "attempt": n.attempts + 1}
                for n in group
            ],
        },
    }


def guard_httpx_log(secrets: Sequence[str]) -> None:
    """httpx logs each request's URL at INFO: mask NOTIFY_WEBHOOK_URL on its logger, for
    every handler (archiver.logs masks it too, but not a handler added elsewhere)."""
    logger = logging.getLogger("httpx")
    wanted = tuple(s for s in secrets if s)
    if not any(isinstance(f, RedactingFilter) and f.secrets == wanted for f in logger.filters):
        logger.addFilter(RedactingFilter(wanted))
