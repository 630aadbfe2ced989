"""What each kind of snapshot looks like, taken once from the project's own clients.

bench/archive.py generates millions of snapshots; their rows and raw answers are copied from
real captures made here against the Meta simulator (served in process over httpx's ASGI
transport: the real GraphClient, ThreadsClient and webhook parser, no stand-in), so the
archive holds what the workers would store, with other numbers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx

from metasim import World, create_app, story_insights_payload
from store.recording import MetricRow
from workers.meta.days import closed_days
from workers.meta.graph_api import GraphClient, IgAccount
from workers.meta.threads_api import POST_METRICS, ThreadsAccount, ThreadsClient
from workers.meta.transport import MetaTransport
from workers.webhooks.envelope import parse_body
from workers.webhooks.story_changes import story_metric_rows

SIM = "http://metasim"
GRAPH_VERSION = "v25.0"


@dataclass(frozen=True)
class Shape:
    """One capture as record_snapshot receives it: its values, raw answer and API version."""

    rows: list[MetricRow]
    raw: Any
    api_version: str | None


@dataclass(frozen=True)
class Shapes:
    story: Shape  # an API capture of a story (3 insights calls)
    webhook: Shape  # a story_insights webhook change
    threads_post: Shape  # a Threads post's lifetime counters
    threads_user: Shape  # a Threads profile poll: views by day, one day's totals, followers
    ids: dict[str, str]  # the simulator's ids in them: story, threads_post, threads_user
    taken_at: datetime  # the simulator's clock then (Threads values are dated from it)


def capture_shapes() -> Shapes:
    """One capture of each kind from a fresh simulator."""
    return asyncio.run(_capture())


async def _capture() -> Shapes:
    world = World()
    account = world.add_account()
    story = world.add_story(account.ig_user_id, age_seconds=23 * 3600, viewers=900)
    user = world.add_threads_user(ig_user_id=account.ig_user_id)
    post = world.add_threads_post(user.id, age_seconds=6 * 3600)
    transport = httpx.ASGITransport(app=create_app(world))
    async with httpx.AsyncClient(transport=transport, base_url=SIM, timeout=10.0) as http:
        meta = MetaTransport(http, backoff_seconds=0.01)
        graph = GraphClient(
            meta, facebook_url=f"{SIM}/facebook", instagram_url=f"{SIM}/instagram",
            version=GRAPH_VERSION,
        )  # fmt: skip
        got = await graph.story_insights(IgAccount(account.ig_user_id, account.token), story.id)
        threads = ThreadsClient(meta, base_url=f"{SIM}/threads")
        creds = ThreadsAccount(user.id, user.token)
        post_rows, post_raw = await threads.post_insights(creds, post.id, metrics=POST_METRICS)
        user_shape = await _threads_user(threads, creds, world)
    raw = {"insights": got.raw, "dropped": list(got.dropped)}
    return Shapes(
        story=Shape(got.rows, raw, got.api_version),
        webhook=_webhook(account.ig_user_id, world.story_webhook_value(story.id)),
        threads_post=Shape(post_rows, post_raw, "v1.0"),
        threads_user=user_shape,
        ids={"story": story.id, "threads_post": post.id, "threads_user": user.id},
        taken_at=world.now(),
    )


async def _threads_user(client: ThreadsClient, creds: ThreadsAccount, world: World) -> Shape:
    """As workers.captures.threads_polls asks: views over two days, one closed day's totals
    (dated by the day's end), followers_count."""
    now = world.now()
    since, until = int((now - timedelta(days=2)).timestamp()), int(now.timestamp())
    views, views_raw = await client.user_insights(creds, ("views",), since=since, until=until)
    day = closed_days(now, 1)[0]
    totals = ("likes", "replies", "reposts", "quotes", "clicks")
    day_rows, day_raw = await client.user_insights(
        creds, totals, since=day.params["since"], until=day.params["until"]
    )
    followers, followers_raw = await client.user_insights(creds, ("followers_count",))
    rows = views + [replace(row, end_time=day.until) for row in day_rows] + followers
    raw = {"views": views_raw, f"totals:{day.since.date()}": day_raw,
           "followers_count": followers_raw}  # fmt: skip
    return Shape(rows, raw, None)


def _webhook(ig_user_id: str, value: dict[str, Any]) -> Shape:
    """Through the receiver's parser, as workers.webhooks.story_changes stores it."""
    body = json.dumps(story_insights_payload(ig_user_id, value)).encode()
    change = parse_body(body, platform="instagram")[0]
    return Shape(story_metric_rows(change.value), change.value, None)
