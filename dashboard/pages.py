"""The overview pages: accounts (coverage, tokens, re-auth) and webhook deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection

from core.redaction import scrub
from dashboard.html import Html, export_links, heading, link, page, path, table, text
from dashboard.queries import failed_deliveries, recent_media
from reports.coverage import AccountStatus, Deliveries, days_left
from reports.figures import Counters
from reports.pauses import PauseReport
from store.story_bookkeeping import REAUTH_REQUIRED


def token_cell(account: AccountStatus, now: datetime) -> Html:
    if account.token_never_expires:
        return text("never expires")
    left = days_left(account.ig_token_expires_at, now)
    if left is None:
        return text("unknown")
    return Html('<span class="bad">expired</span>') if left < 0 else text(left)


def reauth_cell(account: AccountStatus) -> Html:
    sides = [("Instagram", account.state, account.state_reason)]
    if account.threads is not None:
        sides.append(("Threads", account.threads.state, account.threads.state_reason))
    needed = [
        f"{name}: {scrub(reason or state)}"
        for name, state, reason in sides
        if state == REAUTH_REQUIRED
    ]
    return (
        Html(f'<span class="bad">yes ({text("; ".join(needed))})</span>') if needed else text("no")
    )


def missed_cell(account: AccountStatus) -> Html:
    reasons = ", ".join(
        f"{scrub(r)}: {n}" for r, n in sorted(account.stories.missed_reasons.items())
    )
    return text(f"{account.stories.missed} ({reasons})" if reasons else account.stories.missed)


def pauses_cell(counters: Counters | None, platform: str) -> Html:
    if counters is None:
        return text("unknown (REDIS_URL unset or unreachable)")
    found = {r: n for (p, r), n in counters.pauses.items() if p == platform}
    return text(", ".join(f"{r}: {n}" for r, n in sorted(found.items())) or "none")


ACCOUNT_HEADERS = (
    "account",
    "state",
    "stories seen",
    "final before expiry",
    "missed (why)",
    "live",
    "IG token days left",
    "needs re-auth",
    "throttle pauses",
    "Threads profile",
)


def account_pauses_cell(account: AccountStatus, pauses: PauseReport) -> Html:
    """The account's throttle pauses by reason, and the time left of a current one."""
    if pauses.by_ig_user is None:
        return text(f"unknown ({pauses.unknown_because})")
    mine = pauses.by_ig_user.get(account.ig_user_id)
    if mine is None or not mine.total:
        return text("none")
    counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(mine.counts.items()))
    now = f"; paused for {mine.paused_for_seconds:.0f} s" if mine.paused_for_seconds else ""
    return text(counts + now)


def account_row(account: AccountStatus, pauses: PauseReport, now: datetime) -> list[object]:
    threads = account.threads
    return [
        Html(f'<a href="#a{account.id}">{text(account.name)}</a>'),
        account.state,
        account.stories.seen,
        account.stories.final_captured,
        missed_cell(account),
        account.stories.live,
        token_cell(account, now),
        reauth_cell(account),
        account_pauses_cell(account, pauses),
        None
        if threads is None
        else link(path("threads", "users", threads.threads_user_id), threads.threads_user_id),
    ]


def accounts_page(
    conn: Connection,
    accounts: list[AccountStatus],
    counters: Counters | None,
    pauses: PauseReport,
    now: datetime,
) -> Html:
    rows = [account_row(a, pauses, now) for a in accounts]
    sections = [
        table(ACCOUNT_HEADERS, rows, "accounts"),
        Html(
            f"<p>Throttle pauses since the workers started, all accounts: Instagram "
            f"{pauses_cell(counters, 'instagram')}; Threads {pauses_cell(counters, 'threads')}</p>"
        ),
        export_links(view="story_final"),
    ]
    for account in accounts:
        sections += account_media(conn, account)
    return page("Accounts", *sections)


def account_media(conn: Connection, account: AccountStatus) -> list[Html]:
    """The account's newest stories and Threads posts, each linking to its page."""
    stories = [
        [
            link(path("stories", r.media_id), r.media_id),
            r.posted_at,
            r.expires_at,
            r.capture_state,
            scrub(r.missed_reason) if r.missed_reason else None,
        ]
        for r in recent_media(conn, account.id, "story")
    ]
    sections = [
        Html(f'<h2 id="a{account.id}">{text(account.name)}: stories</h2>'),
        table(("story", "posted", "expires", "state", "missed because"), stories, "stories"),
        export_links(view="metric_history", account=str(account.id), subject_type="story"),
        Html(
            f"<p>{link(path('accounts', account.ig_user_id, 'insights'), 'Account insights')}"
            " by day: reach, views, followers, demographics</p>"
        ),
    ]
    posts = [
        [link(path("threads", "posts", r.media_id), r.media_id), r.posted_at, r.capture_state]
        for r in recent_media(conn, account.id, "threads_post")
    ]
    if posts:
        sections += [
            heading(f"{account.name}: Threads posts"),
            table(("post", "posted", "state"), posts, "posts"),
        ]
    for subject_type, where, title in (("feed", "feed", "feed posts"), ("reel", "reels", "Reels")):
        found = [
            [link(path(where, r.media_id), r.media_id), r.posted_at, r.capture_state]
            for r in recent_media(conn, account.id, subject_type)
        ]
        if found:
            sections += [
                heading(f"{account.name}: {title}"),
                table(("media", "posted", "state"), found, subject_type),
            ]
    return sections


def deliveries_page(conn: Connection, deliveries: Deliveries) -> Html:
    counts = sorted(deliveries.by_status.items())
    failed = [
        [
            row.id,
            row.platform,
            row.received_at,
            row.attempts,
            Html(f"<pre>{text(scrub(row.error or row.summary or 'no error recorded'))}</pre>"),
            Html(f"<code>archiver replay --event {int(row.id)}</code>"),
        ]
        for row in failed_deliveries(conn)
    ]
    return page(
        "Deliveries",
        table(("state", "deliveries"), [*counts, ("total", deliveries.total)], "states"),
        text(f"Oldest pending: {text(deliveries.oldest_pending_at)}"),
        heading("Failed (newest first)"),
        table(("id", "platform", "received", "attempts", "error", "replay"), failed, "failed"),
    )
