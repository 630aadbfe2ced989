"""The text report of `archiver status`: one block per account, then the totals.

Reasons and errors go through `safe` (one line, token-shaped text masked, then cut); no token
column is ever read, and `run_status` scrubs the whole report once more before printing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from archiver.status.as_json import safe, totals
from reports.coverage import days_left
from reports.pauses import PauseReport, Pauses

if TYPE_CHECKING:
    from reports.coverage import AccountStatus, Deliveries, ThreadsStatus
    from reports.problems import MediaProblem, MediaProblems


def plural(count: int | None, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def ago(then: datetime | None, now: datetime) -> str:
    """`2026-12-01 09:45 UTC (15 min ago)`, or `never`."""
    if then is None:
        return "never"
    return f"{then:%Y-%m-%d %H:%M} UTC ({since(then, now)})"


def since(then: datetime, now: datetime) -> str:
    """`15 min ago`, or `in 15 min` for a time still ahead."""
    seconds = (now - then).total_seconds()
    amount = _duration(abs(seconds))
    return f"{amount} ago" if seconds >= 0 else f"in {amount}"


def error_line(error: str | None, at: datetime | None, now: datetime) -> str:
    """`<error> (3 min ago)`, masked and on one line; `-` when there is none."""
    line = safe(error) or "-"
    return line if error is None or at is None else f"{line} ({since(at, now)})"


def _duration(seconds: float) -> str:
    for unit, size, up_to in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds // 86400)} days"


def token_line(expires_at: datetime | None, now: datetime) -> str:
    left = days_left(expires_at, now)
    if expires_at is None or left is None:
        return "expiry unknown"
    if left < 0:  # whole days since, as `left` counts whole days until
        since_days = int((now - expires_at).total_seconds() // 86400)
        return f"EXPIRED {expires_at:%Y-%m-%d} ({plural(since_days, 'day')} ago)"
    return f"expires {expires_at:%Y-%m-%d} ({left} days left)"


def ig_token_line(account: AccountStatus, now: datetime) -> str:
    """The IG token's expiry; a Facebook Login token's as debug_token last told it (a token
    asked about with no expiry never expires), and when the user's data access expires."""
    line = token_line(account.ig_token_expires_at, now)
    if account.ig_token_check_error is not None:
        line = f"{line} ({safe(account.ig_token_check_error)})"
    elif account.token_never_expires:
        assert account.ig_token_checked_at is not None
        line = f"never expires (asked {since(account.ig_token_checked_at, now)})"
    if account.ig_data_access_expires_at is not None:
        line += f"; data access {token_line(account.ig_data_access_expires_at, now)}"
    return line


def poll_line(account: AccountStatus, now: datetime) -> str:
    """When stories were last listed and when the next listing is due (a stuck one shows)."""
    return due_line(account.stories_polled_at, account.next_story_poll_at, now)


def due_line(last: datetime | None, due: datetime | None, now: datetime) -> str:
    line = ago(last, now)
    if due is not None:
        line += f"; next due {ago(due, now)}"
    return line


def threads_fields(threads: ThreadsStatus, now: datetime) -> list[tuple[str, str]]:
    """The Threads side of an account block: link, token, polling, posts, snapshots, refusals."""
    link = f"user {threads.threads_user_id}, linked by {threads.link_source or 'unknown source'}"
    if threads.linked_at is not None:
        link += f" {ago(threads.linked_at, now)}"
    token = threads.state + (f": {safe(threads.state_reason)}" if threads.state_reason else "")
    token += f"; {token_line(threads.token_expires_at, now)}"
    if threads.token_refreshed_at is not None:
        token += f"; refreshed {ago(threads.token_refreshed_at, now)}"
    posts = threads.posts
    snapshots = ", ".join(f"{name} {n}" for name, n in sorted(threads.snapshots.items()))
    return [
        ("threads", link),
        ("threads token", token),
        ("last threads poll", due_line(threads.polled_at, threads.next_poll_at, now)),
        *overdue_field("threads poll overdue", threads.poll_overdue_seconds),
        *problem_field("threads problem", threads.problem, threads.failures),
        (
            "threads posts",
            f"{posts.seen} seen: {posts.tracked} tracked, {posts.done} done, "
            f"{posts.skipped} skipped (reposts)"
            + (f", {posts.deleted} deleted" if posts.deleted else ""),
        ),
        (
            "threads snapshots",
            f"{sum(threads.snapshots.values())}" + (f" ({snapshots})" if snapshots else ""),
        ),
        ("threads refused", refused_line(threads)),
    ]


def refused_line(threads: ThreadsStatus) -> str:
    """Metrics Meta refused, grouped by reason and retry day: `clicks, views (reason); asked
    again 2026-12-08`."""
    groups: dict[tuple[str, str], list[str]] = {}
    for refused in threads.refused:
        retry = "" if refused.retry_at is None else f"; asked again {refused.retry_at:%Y-%m-%d}"
        groups.setdefault((safe(refused.reason) or "no reason recorded", retry), []).append(
            refused.metric
        )
    parts = [
        f"{', '.join(metrics)} ({reason}){retry}" for (reason, retry), metrics in groups.items()
    ]
    return " | ".join(parts) or "-"


def pause_line(account: AccountStatus, pauses: PauseReport) -> str:
    if pauses.by_ig_user is None:
        return f"unknown ({pauses.unknown_because})"
    found = pauses.by_ig_user.get(account.ig_user_id, Pauses())
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(found.counts.items()))
    line = f"{found.total}" + (f" ({reasons})" if reasons else "")
    if found.paused_for_seconds > 0:
        line += f"; paused now, {_duration(found.paused_for_seconds)} left"
    return line


def insights_line(account: AccountStatus, now: datetime) -> str:
    """When the account's own insights last ran and when they are due again."""
    due = account.next_ig_insights_at
    later = "due now" if due is None or due <= now else f"next {due:%Y-%m-%d %H:%M} UTC"
    return f"last run {ago(account.ig_insights_polled_at, now)}; {later}"


def instagram_fields(account: AccountStatus, now: datetime) -> list[tuple[str, str]]:
    """The Instagram side of an account block: state, token, story polling and coverage."""
    stories = account.stories
    state = account.state + (f": {safe(account.state_reason)}" if account.state_reason else "")
    fields = [("state", state), ("token", ig_token_line(account, now))]
    if account.login == "instagram":  # Instagram Login tokens are refreshed by the workers
        fields.append(("token refreshed", ago(account.ig_token_refreshed_at, now)))
    fields += [
        ("last story poll", poll_line(account, now)),
        *overdue_field("listing overdue", account.story_poll_overdue_seconds),
        *problem_field("problem", account.ig_problem, account.ig_failures),
        ("account insights", insights_line(account, now)),
        *problem_field(
            "insights problem", account.ig_insights_problem, account.ig_insights_failures
        ),
        *problem_field("feed/Reels listing", account.media_problem, account.media_failures),
        (
            "stories",
            f"{stories.seen} seen: {stories.final_captured} captured before expiry, "
            f"{stories.missed} missed, {stories.live} live now",
        ),
    ]
    if stories.missed_reasons:
        reasons = sorted(stories.missed_reasons.items(), key=lambda item: (-item[1], item[0]))
        fields.append(("missed because", "; ".join(f"{n} {safe(r)}" for r, n in reasons)))
    return fields


def account_lines(account: AccountStatus, pauses: PauseReport, now: datetime) -> list[str]:
    snapshots = ", ".join(f"{source} {n}" for source, n in sorted(account.snapshots.items()))
    fields = instagram_fields(account, now)
    fields += [
        (
            "snapshots",
            f"{sum(account.snapshots.values())}" + (f" ({snapshots})" if snapshots else ""),
        ),
        ("throttle pauses", pause_line(account, pauses)),
    ]
    if account.threads is not None:
        fields += threads_fields(account.threads, now)
    fields.append(("last error", error_line(account.last_error, account.last_error_at, now)))
    problems = account.media_problems
    if problems.total:
        fields.append(("capture problems", f"{problems.total} (overdue, or with an error)"))
    header = (
        f"{account.name} (account {account.id}, IG {account.ig_user_id}, {account.login} login)"
    )
    width = max(len(name) for name, _ in fields)
    lines = [header, *(f"  {name.ljust(width)}  {value}" for name, value in fields)]
    return lines + media_lines(problems, now)


def overdue_field(label: str, seconds: float | None) -> list[tuple[str, str]]:
    """A field only when the work is overdue: an account on time shows nothing."""
    return [(label, f"by {_duration(seconds)}")] if seconds else []


def problem_field(label: str, problem: str | None, failures: int) -> list[tuple[str, str]]:
    """An error retrying cannot fix, and how many in a row; nothing when there is none."""
    if not problem and not failures:
        return []
    line = safe(problem) or "failing"
    return [(label, line + (f"; {plural(failures, 'failure')} in a row" if failures else ""))]


def media_lines(problems: MediaProblems, now: datetime) -> list[str]:
    """One line per listed story or post with a problem, then how many more there are."""
    lines = [f"    {media_line(problem, now)}" for problem in problems.listed]
    more = problems.total - len(problems.listed)
    return lines + ([f"    and {more} more"] if more > 0 else [])


def media_line(problem: MediaProblem, now: datetime) -> str:
    """`story 1790...: slot s21, overdue by 17 min; last error HTTP 500 (2 min ago)`."""
    what = "story" if problem.subject_type == "story" else "post"
    line = f"{what} {problem.media_id}: slot {problem.slot or '-'}"
    if problem.overdue_seconds:
        line += f", overdue by {_duration(problem.overdue_seconds)}"
    if problem.last_error is not None:
        line += f"; last error {error_line(problem.last_error, problem.last_error_at, now)}"
    return line


def as_text(
    accounts: list[AccountStatus], deliveries: Deliveries, pauses: PauseReport, now: datetime
) -> str:
    lines: list[str] = []
    for account in accounts:
        lines += [*account_lines(account, pauses, now), ""]
    if not accounts:
        lines += ["no accounts yet: add one with `archiver accounts add`", ""]
    total = totals(accounts, pauses)
    paused = "unknown" if total["throttle_pauses"] is None else total["throttle_pauses"]
    lines.append(
        f"totals      {plural(total['accounts'], 'account')}, "
        f"{plural(total['stories_seen'], 'story', 'stories')} seen "
        f"({total['final_captured']} captured before expiry, {total['missed']} missed, "
        f"{total['live']} live now), {plural(total['snapshots'], 'snapshot')}, "
        f"throttle pauses {paused}"
        + (
            f"; Threads: {plural(total['threads_profiles'], 'profile')}, "
            f"{plural(total['threads_posts'], 'post')}"
            if total["threads_profiles"]
            else ""
        )
    )
    lines += summary_lines(total, pauses)
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(deliveries.by_status.items()))
    delivery = f"deliveries  {deliveries.total}" + (f": {by_status}" if by_status else "")
    if deliveries.oldest_pending_at is not None:
        delivery += f"; oldest pending received {ago(deliveries.oldest_pending_at, now)}"
    lines.append(delivery)
    return "\n".join(lines)


def summary_lines(total: dict[str, int | None], pauses: PauseReport) -> list[str]:
    """Problems over all accounts, app-wide pauses and failed jobs; each only when there are
    any."""
    problems = [
        plural(total["accounts_with_problem"], "account") + " with a problem",
        plural(total["accounts_awaiting_reauth"], "account") + " awaiting re-authorisation",
        plural(total["story_polls_overdue"], "story listing") + " overdue",
        plural(total["threads_polls_overdue"], "Threads poll") + " overdue",
        plural(total["media_with_problem"], "story/post", "stories/posts") + " with a problem",
    ]
    shown = [text for text in problems if not text.startswith("0 ")]
    lines = [f"problems    {', '.join(shown)}"] if shown else []
    apps = (
        ("Instagram app", pauses.app_paused_for_seconds),
        ("Threads app", pauses.threads_app_paused_for_seconds),
    )
    paused = [f"{app} {_duration(left)} left" for app, left in apps if left]
    if paused:
        lines.append(f"app paused  {'; '.join(paused)}")
    if pauses.job_failures:
        lines.append(f"job errors  {job_errors(pauses.job_failures)}")
    return lines


OUTCOMES = {"retry": "retried", "gave_up": "given up"}


def job_errors(failures: dict[str, dict[str, int]]) -> str:
    """`capture_story 3 retried, 1 given up; poll_stories 2 retried`."""
    return "; ".join(
        f"{function} "
        + ", ".join(f"{n} {OUTCOMES.get(outcome, outcome)}" for outcome, n in outcomes.items())
        for function, outcomes in failures.items()
    )


def plaintext_line(count: int, *, keyed: bool) -> str:
    """Tokens stored unencrypted, and what encrypts them."""
    fix = (
        "a worker encrypts them when it starts, or `archiver accounts rotate-key` now"
        if keyed
        else "set TOKEN_ENCRYPTION_KEY (`archiver accounts new-key`); a worker then encrypts them"
    )
    return f"tokens      {count} stored in plaintext: {fix}"
