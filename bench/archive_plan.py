"""The captures of a generated archive, in the order the workers would have stored them.

Each story gets the production schedule's snapshots (`first`, `s1` ... `s<versions-2>` hourly,
`final` 30 s before expiry) and one story in `webhook_every` a `webhook` version an hour after
expiry; each account's Threads profile is polled `polls_per_day` times a day and posts
`posts_per_day` Threads posts, each captured `post_versions` times. The rows and raw answers
are the shapes (bench/archive_shapes.py) with their numbers scaled per story and growing with
each version, and the shape's ids replaced by the generated subject's.
"""

from __future__ import annotations

import heapq
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from archive_shapes import Shape, Shapes

from core.redaction import scrub_json
from models.types import compact_raw
from store.recording import MetricRow, Subject

DAY = timedelta(days=1)
STORY_BASE = 18_100_000_000_000_000
POST_BASE = 17_890_100_000_000_000
THREADS_USER_BASE = 25_100_000_000_000_000
IG_USER_BASE = 17_841_400_000_000_000
POST_AGES_H = (1, 3, 6, 12, 24, 48, 96, 168)  # a Threads post's captures, hours after posting


@dataclass(frozen=True)
class Plan:
    accounts: int
    stories_per_day: int
    days: int
    versions: int
    end: datetime  # the stories are posted over the `days` days before this
    webhook_every: int = 3
    posts_per_day: int = 1
    post_versions: int = 6
    polls_per_day: int = 4
    seed: int = 1

    @property
    def start(self) -> datetime:
        return self.end - self.days * DAY

    @property
    def stories(self) -> int:
        return self.accounts * self.stories_per_day * self.days


def story_id(n: int) -> str:
    return str(STORY_BASE + n)


def ig_user_id(account: int) -> str:
    return str(IG_USER_BASE + account)


def threads_user_id(account: int) -> str:
    return str(THREADS_USER_BASE + account)


class Template:
    """A shape with its numbers and ids replaceable: `rows`/`raw` give what a capture hands
    record_snapshot, `body_json` the stored raw (compacted) as JSON text, built without
    walking the tree for every snapshot."""

    def __init__(self, shape: Shape, subject_id: str) -> None:
        self.shape, self.subject_id = shape, subject_id
        self.numbers: list[float] = []
        self.has_raw = shape.raw is not None  # record_snapshot stores no raw row then
        marked = _mark(scrub_json(compact_raw(shape.raw)), self.numbers)
        compact = json.dumps(marked, separators=(",", ":"), ensure_ascii=False)  # as PackedJSON
        parts = re.split(r'"@@N(\d+)@@"', compact)
        self.text_parts, self.slots = parts[0::2], [int(i) for i in parts[1::2]]

    def rows(self, factor: float, subject_id: str, shift: timedelta) -> list[MetricRow]:
        return [
            replace(
                row,
                value=None if row.value is None else _scaled(row.value, factor),
                dimension=_swap(row.dimension, self.subject_id, subject_id),
                end_time=None if row.end_time is None else row.end_time + shift,
            )
            for row in self.shape.rows
        ]

    def raw(self, factor: float, subject_id: str) -> Any:
        if not self.has_raw:
            return None
        return _rewrite(self.shape.raw, factor, self.subject_id, subject_id)

    def body_json(self, factor: float, subject_id: str) -> str | None:
        if not self.has_raw:
            return None
        out = [self.text_parts[0]]
        for slot, text in zip(self.slots, self.text_parts[1:], strict=True):
            out.append(json.dumps(_scaled(self.numbers[slot], factor)))
            out.append(text)
        return "".join(out).replace(self.subject_id, subject_id)


def _scaled(x: float, factor: float) -> Any:
    if x < 0:  # Meta's -1, "fewer than 5": kept as such
        return x
    return round(x * factor) if isinstance(x, int) else float(round(x * factor))


def _swap(text: str | None, old: str, new: str) -> str | None:
    return None if text is None else text.replace(old, new)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _mark(tree: Any, numbers: list[float]) -> Any:
    if isinstance(tree, dict):
        return {key: _mark(value, numbers) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_mark(item, numbers) for item in tree]
    if _is_number(tree):
        numbers.append(tree)
        return f"@@N{len(numbers) - 1}@@"
    return tree


def _rewrite(tree: Any, factor: float, old: str, new: str) -> Any:
    if isinstance(tree, dict):
        return {key: _rewrite(value, factor, old, new) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_rewrite(item, factor, old, new) for item in tree]
    if _is_number(tree):
        return _scaled(tree, factor)
    return tree.replace(old, new) if isinstance(tree, str) else tree


@dataclass(frozen=True)
class Templates:
    story: Template
    webhook: Template
    threads_post: Template
    threads_user: Template
    shape_now: datetime  # when the shapes were taken: Threads end_times shift from it

    @classmethod
    def of(cls, shapes: Shapes) -> Templates:
        ids = shapes.ids
        return cls(
            Template(shapes.story, ids["story"]),
            Template(shapes.webhook, ids["story"]),
            Template(shapes.threads_post, ids["threads_post"]),
            Template(shapes.threads_user, ids["threads_user"]),
            shapes.taken_at,
        )


@dataclass(frozen=True)
class Capture:
    """One snapshot to store: what record_snapshot is called with, plus its version."""

    subject: Subject
    slot: str
    source: str
    version: int
    captured_at: datetime
    template: Template
    factor: float
    shift: timedelta = timedelta(0)
    delivery_id: int | None = None

    def rows(self) -> list[MetricRow]:
        return self.template.rows(self.factor, self.subject.subject_id, self.shift)

    def raw(self) -> Any:
        return self.template.raw(self.factor, self.subject.subject_id)

    def body_json(self) -> str | None:
        return self.template.body_json(self.factor, self.subject.subject_id)


@dataclass(frozen=True)
class StoryMedia:
    """A story's media row (its final snapshot's id is filled in after the snapshots)."""

    account: int
    media_id: str
    posted_at: datetime
    platform: str = "instagram"
    subject_type: str = "story"


@dataclass
class _Counters:
    polls: dict[int, int] = field(default_factory=dict)
    deliveries: int = 0


def captures(
    plan: Plan, templates: Templates, accounts: list[int], media: list[StoryMedia]
) -> Iterator[Capture]:
    """Every capture in captured_at order; appends each subject's media row to `media` as
    its first capture is generated (account i of the plan is `accounts[i]`)."""
    rng = random.Random(plan.seed)
    pending: list[tuple[datetime, int, Capture]] = []
    seq, counters = 0, _Counters()
    for day in range(plan.days):
        day_start = plan.start + day * DAY
        while pending and pending[0][0] < day_start:
            yield heapq.heappop(pending)[2]
        for capture in _day(plan, templates, accounts, media, day, rng, counters):
            seq += 1
            heapq.heappush(pending, (capture.captured_at, seq, capture))
    while pending:
        yield heapq.heappop(pending)[2]


def _day(
    plan: Plan,
    templates: Templates,
    accounts: list[int],
    media: list[StoryMedia],
    day: int,
    rng: random.Random,
    counters: _Counters,
) -> Iterator[Capture]:
    day_start = plan.start + day * DAY
    per_day = plan.stories_per_day * plan.accounts
    for i in range(per_day):
        n = day * per_day + i
        account = accounts[i % plan.accounts]
        posted = day_start + DAY * (i + rng.random()) / per_day
        media.append(StoryMedia(account, story_id(n), posted))
        yield from _story(plan, templates, account, n, posted, rng, counters)
    for a, account in enumerate(accounts):
        yield from _threads_user(plan, templates, account, a, day_start, counters)
        for p in range(plan.posts_per_day):
            n = (day * plan.accounts + a) * plan.posts_per_day + p
            posted = day_start + DAY * (p + rng.random()) / plan.posts_per_day
            media.append(StoryMedia(account, str(POST_BASE + n), posted, "threads", "threads_post"))
            yield from _post(plan, templates, account, str(POST_BASE + n), posted, rng)


def _story(
    plan: Plan,
    templates: Templates,
    account: int,
    n: int,
    posted: datetime,
    rng: random.Random,
    counters: _Counters,
) -> Iterator[Capture]:
    subject = Subject(account, "instagram", "story", story_id(n))
    size = 0.2 + 2.8 * rng.random()
    regular = plan.versions - 2
    step = timedelta(hours=23) / max(regular, 1)
    times = [posted + timedelta(seconds=60 + rng.random() * 60)]
    times += [
        posted + k * step + timedelta(seconds=rng.random() * 90) for k in range(1, regular + 1)
    ]
    times.append(posted + DAY - timedelta(seconds=30 + rng.random() * 20))
    slots = ["first", *(f"s{k}" for k in range(1, regular + 1)), "final"]
    for version, (slot, at) in enumerate(zip(slots, times, strict=True), start=1):
        growth = 0.3 + 0.7 * (version / len(slots))
        yield Capture(subject, slot, "api", version, at, templates.story, size * growth)
    if n % plan.webhook_every == 0:
        counters.deliveries += 1
        at = posted + DAY + timedelta(hours=1, seconds=rng.random() * 60)
        yield Capture(subject, "webhook", "webhook", len(slots) + 1, at, templates.webhook, size,
                      delivery_id=counters.deliveries)  # fmt: skip


def _threads_user(
    plan: Plan, templates: Templates, account: int, a: int, day_start: datetime, c: _Counters
) -> Iterator[Capture]:
    subject = Subject(account, "threads", "threads_user", threads_user_id(a))
    for k in range(plan.polls_per_day):
        at = day_start + DAY * (k + 0.5) / plan.polls_per_day + timedelta(seconds=a % 600)
        version = c.polls[a] = c.polls.get(a, 0) + 1
        shift = _day_of(at) - _day_of(templates.shape_now)
        factor = 0.5 + (a % 7) / 4 + version / 200
        yield Capture(subject, f"poll:{int(at.timestamp())}", "api", version, at,
                      templates.threads_user, factor, shift=shift)  # fmt: skip


def _day_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _post(
    plan: Plan,
    templates: Templates,
    account: int,
    post_id: str,
    posted: datetime,
    rng: random.Random,
) -> Iterator[Capture]:
    subject = Subject(account, "threads", "threads_post", post_id)
    size = 0.2 + 2.8 * rng.random()
    for version, hours in enumerate(POST_AGES_H[: plan.post_versions], start=1):
        at = posted + timedelta(hours=hours, seconds=rng.random() * 30)
        if at > plan.end + DAY:
            return
        yield Capture(subject, f"s{version}", "api", version, at, templates.threads_post,
                      size * (0.4 + 0.6 * version / plan.post_versions))  # fmt: skip
