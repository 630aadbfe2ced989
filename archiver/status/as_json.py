"""The `archiver status --json` document, and the helpers the text report shares with it
(one-line scrubbed reasons, days left, totals)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reports.coverage import days_left
from reports.pauses import PauseReport

if TYPE_CHECKING:
    from reports.coverage import AccountStatus, Deliveries, ThreadsStatus

ERROR_CHARS = 200


def safe(text: str | None) -> str | None:
    """An error or reason fit for one line of output, with anything token-shaped masked
    (before it is cut short, so a cut cannot leave half a token unrecognised)."""
    from core.redaction import scrub

    if text is None:
        return None
    flat = scrub(" ".join(text.split()))
    return flat if len(flat) <= ERROR_CHARS else flat[: ERROR_CHARS - 1] + "…"


def as_json(
    accounts: list[AccountStatus], deliveries: Deliveries, pauses: PauseReport, now: datetime
) -> dict[str, Any]:
    rows = []
    for account in accounts:
        row = asdict(account)
        scrubbed = ("state_reason", "last_error", "ig_problem", "ig_insights_problem")
        for name in (*scrubbed, "media_problem", "ig_token_check_error"):
            row[name] = safe(row[name])
        for problem in row["media_problems"]["listed"]:
            problem["last_error"] = safe(problem["last_error"])
        row["token_days_left"] = days_left(account.ig_token_expires_at, now)
        row["token_never_expires"] = account.token_never_expires
        row["data_access_days_left"] = days_left(account.ig_data_access_expires_at, now)
        row["threads"] = None if account.threads is None else threads_json(account.threads, now)
        row["snapshots"] = {
            "total": sum(account.snapshots.values()),
            "by_source": account.snapshots,
        }
        found = None if pauses.by_ig_user is None else pauses.by_ig_user.get(account.ig_user_id)
        row["throttle_pauses"] = None if found is None else {**asdict(found), "total": found.total}
        rows.append(row)
    return {
        "generated_at": now.isoformat(),
        "accounts": rows,
        "totals": totals(accounts, pauses),
        "throttle_pauses_unknown_because": pauses.unknown_because,
        "app_paused_for_seconds": pauses.app_paused_for_seconds,
        "threads_app_paused_for_seconds": pauses.threads_app_paused_for_seconds,
        "job_failures": pauses.job_failures,
        "deliveries": {
            "total": deliveries.total,
            "by_status": deliveries.by_status,
            "oldest_pending_at": deliveries.oldest_pending_at,
        },
    }


def threads_json(threads: ThreadsStatus, now: datetime) -> dict[str, Any]:
    """The Threads side of an account, reasons made safe to print."""
    row = asdict(threads)
    row["state_reason"], row["problem"] = safe(threads.state_reason), safe(threads.problem)
    row["token_days_left"] = days_left(threads.token_expires_at, now)
    row["snapshots"] = {"total": sum(threads.snapshots.values()), "by_kind": threads.snapshots}
    for refused in row["refused"]:
        refused["reason"] = safe(refused["reason"])
    return row


def totals(accounts: list[AccountStatus], pauses: PauseReport) -> dict[str, int | None]:
    """Sums over the accounts; `snapshots` counts both platforms."""
    known = pauses.by_ig_user
    linked = [a.threads for a in accounts if a.threads is not None]
    threads_snapshots = sum(sum(t.snapshots.values()) for t in linked)
    return {
        "accounts": len(accounts),
        "stories_seen": sum(a.stories.seen for a in accounts),
        "final_captured": sum(a.stories.final_captured for a in accounts),
        "missed": sum(a.stories.missed for a in accounts),
        "live": sum(a.stories.live for a in accounts),
        "snapshots": sum(sum(a.snapshots.values()) for a in accounts) + threads_snapshots,
        "throttle_pauses": None if known is None else sum(p.total for p in known.values()),
        "threads_profiles": len(linked),
        "threads_posts": sum(t.posts.seen for t in linked),
        "threads_snapshots": threads_snapshots,
        **problem_totals(accounts),
    }


def problem_totals(accounts: list[AccountStatus]) -> dict[str, int]:
    """How many accounts have a problem, wait for re-authorisation (either side) or are overdue,
    and how many open media have a problem."""
    from store.story_bookkeeping import REAUTH_REQUIRED as REAUTH

    linked = [a.threads for a in accounts if a.threads is not None]
    return {
        "accounts_with_problem": sum(
            bool(
                a.ig_problem
                or a.ig_insights_problem
                or a.media_problem
                or (a.threads is not None and a.threads.problem)
            )
            for a in accounts
        ),
        "accounts_awaiting_reauth": sum(
            REAUTH in (a.state, a.threads.state if a.threads else None) for a in accounts
        ),
        "story_polls_overdue": sum(bool(a.story_poll_overdue_seconds) for a in accounts),
        "threads_polls_overdue": sum(bool(t.poll_overdue_seconds) for t in linked),
        "media_with_problem": sum(a.media_problems.total for a in accounts),
    }
