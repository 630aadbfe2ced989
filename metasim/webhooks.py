"""Webhook deliveries as Meta sends them: payload builders and the X-Hub-Signature-256 header.

The signature is HMAC-SHA256 of the exact body bytes keyed with the app secret, sent as
`sha256=<lowercase hex>` (GS). Meta serialises with non-ASCII escaped (`\\u00e4`, MSG), so
`encode` does the same; a receiver must verify the raw bytes, never re-serialised JSON.
story_insights comes array-wrapped in Meta's samples and as a bare object in GS; Threads
deliveries use their own envelope (https://developers.facebook.com/docs/threads/webhooks).
Pure code, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metasim.world.entities import ThreadsPost

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(body: bytes, secret: str) -> str:
    """`sha256=<hex>` of the raw body, keyed with the (Meta or Threads) app secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode(payload: Any) -> bytes:
    """Compact JSON with non-ASCII escaped, as Meta sends it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Delivery:
    """A body and the headers to POST it with (the signature stays out of the repr)."""

    body: bytes
    headers: dict[str, str] = field(repr=False)

    @property
    def signature(self) -> str:
        return self.headers[SIGNATURE_HEADER]


def deliver(payload: Any, secret: str, *, body: bytes | None = None) -> Delivery:
    """Sign a payload (or given raw bytes, e.g. a deliberately odd body)."""
    raw = encode(payload) if body is None else body
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        SIGNATURE_HEADER: sign(raw, secret),
    }
    return Delivery(raw, headers)


def story_insights_payload(
    ig_user_id: str,
    values: Mapping[str, Any] | list[Mapping[str, Any]],
    *,
    sent_at: int | None = None,
    wrapped: bool = True,
) -> Any:
    """An Instagram `story_insights` notification; several values batch as several changes.

    `values` are change values such as World.story_webhook_value(media_id):
    {"media_id", "exits", "replies", "reach", "taps_forward", "taps_back", "impressions"}.
    `wrapped` gives Meta's sample form (a JSON array around the object).
    """
    items = [values] if isinstance(values, Mapping) else list(values)
    entry = {
        "changes": [{"field": "story_insights", "value": dict(v)} for v in items],
        "id": str(ig_user_id),
        "time": int(time.time()) if sent_at is None else sent_at,
    }
    body = {"entry": [entry], "object": "instagram"}
    return [body] if wrapped else body


def threads_payload(
    *,
    app_id: str,
    target_id: str,
    field: str,
    value: Mapping[str, Any],
    topic: str = "moderate",
    sent_at: int | None = None,
    subscription_id: str = "1",
    values_as_list: bool = False,
) -> dict[str, Any]:
    """A Threads webhook (fields: replies, delete under `moderate`; mentions, publish under
    `interaction`). Meta shows `values` as an object; one public fixture uses a list."""
    values: Any = {"value": dict(value), "field": field}
    return {
        "app_id": str(app_id),
        "topic": topic,
        "target_id": str(target_id),
        "time": int(time.time()) if sent_at is None else sent_at,
        "subscription_id": subscription_id,
        "has_uid_field": False,
        "values": [values] if values_as_list else values,
    }


def _meta_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _permalink(post: ThreadsPost, username: str) -> str:
    return f"https://www.threads.net/@{username}/post/T{post.id[-10:]}"


def publish_value(post: ThreadsPost, username: str, *, detailed: bool = False) -> dict[str, Any]:
    """The `value` of a `publish` change: Meta's sample has only id, media_type, permalink,
    timestamp and username, for posts and replies alike, so a receiver cannot tell them
    apart by it. `detailed` adds the reply fields of the Threads media object (is_reply,
    replied_to, root_post), as a richer notification might carry them [UNCERTAIN]."""
    value: dict[str, Any] = {
        "id": post.id,
        "media_type": post.media_type,
        "permalink": _permalink(post, username),
        "timestamp": _meta_time(post.timestamp),
        "username": username,
    }
    if detailed:
        value["is_reply"] = post.is_reply
        if post.replied_to is not None:
            value["replied_to"] = {"id": post.replied_to}
            value["root_post"] = {"id": post.root_post}
    return value


def delete_value(post: ThreadsPost, username: str) -> dict[str, Any]:
    """The `value` of a `delete` change, as Meta's sample: id, owner, deleted_at, timestamp
    and username (the post must have been deleted, World.delete_threads_post)."""
    if post.deleted_at is None:
        msg = f"post {post.id} is not deleted"
        raise ValueError(msg)
    return {
        "id": post.id,
        "owner": {"owner_id": post.user},
        "deleted_at": _meta_time(post.deleted_at),
        "timestamp": _meta_time(post.timestamp),
        "username": username,
    }


def publish_payload(
    post: ThreadsPost, username: str, *, app_id: str, detailed: bool = False
) -> dict[str, Any]:
    """The whole `publish` notification (topic `interaction`, target: the posting user)."""
    value = publish_value(post, username, detailed=detailed)
    return threads_payload(
        app_id=app_id, target_id=post.user, field="publish", value=value, topic="interaction"
    )


def delete_payload(post: ThreadsPost, username: str, *, app_id: str) -> dict[str, Any]:
    """The whole `delete` notification (topic `moderate`). Meta's field table calls
    `target_id` the media's id while its sample shows the owner's; the sample is followed."""
    value = delete_value(post, username)
    return threads_payload(
        app_id=app_id, target_id=post.user, field="delete", value=value, topic="moderate"
    )
