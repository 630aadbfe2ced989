"""Metrics Meta refused, remembered in Redis for every worker: for one media first, and for
the whole API version only once several distinct media refused the same metric.

Meta's (#100) about a metric is often about one media, not the version: "(#100) The metric
shares is not supported for this media type" (https://github.com/exileum/meta-mcp/issues/120)
or "The Media Insights API does not support the views metric for this media product type",
seen on some accounts only (https://github.com/airbytehq/airbyte/pull/62902); which metric
fits which media: https://developers.facebook.com/docs/instagram-platform/reference/instagram-media/insights
So a refusal drops the metric for that media (its later captures do not ask it again), and
for the version only when `drop_after` distinct media refused it and no media had it answered
within `answer_window_seconds`: a metric Meta still answers somewhere is valid for the version.
Every key expires, so a metric dropped by mistake is asked again some day.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

MEDIA: Final = "media"
VERSION: Final = "version"
VERSION_DROP_AFTER_MEDIA: Final = 3  # distinct media refusing a metric before the version drops it
MEDIA_TTL_SECONDS: Final = 2 * 86400  # a story's insights live 24 h; its record outlives them
VERSION_TTL_SECONDS: Final = 7 * 86400  # then a version-wide drop is tried again
ANSWER_WINDOW_SECONDS: Final = 86400  # answered this recently for any media: valid for the version
_REASON_CHARS: Final = 500


@dataclass(frozen=True)
class Refusal:
    """Why a metric is not asked for a media: refused by that media, or dropped for the version;
    `message` is Meta's (scrubbed) error message."""

    scope: str
    message: str

    def to_raw(self) -> dict[str, str]:
        return {"scope": self.scope, "message": self.message}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DroppedMetrics:
    """The shared record of refused metrics (keys under `<prefix>:metric_*`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "archiver",
        ttl_seconds: int = VERSION_TTL_SECONDS,
        media_ttl_seconds: int = MEDIA_TTL_SECONDS,
        drop_after: int = VERSION_DROP_AFTER_MEDIA,
        answer_window_seconds: int = ANSWER_WINDOW_SECONDS,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.media_ttl_seconds = media_ttl_seconds
        self.drop_after = drop_after
        self.answer_window_seconds = answer_window_seconds

    def __repr__(self) -> str:
        return (
            f"DroppedMetrics(prefix={self.prefix!r}, ttl_seconds={self.ttl_seconds}, "
            f"drop_after={self.drop_after})"
        )

    def key(self, version: str, metric: str) -> str:
        """The version-wide drop of a metric (its value: the reason)."""
        return f"{self.prefix}:metric_dropped:{version}:{metric}"

    def media_key(self, version: str, media_id: str) -> str:
        """A hash: metric -> Meta's message, for the metrics this media refused."""
        return f"{self.prefix}:metric_refused:{version}:{media_id}"

    def refusers_key(self, version: str, metric: str) -> str:
        """A set of the distinct media that refused a metric."""
        return f"{self.prefix}:metric_refusers:{version}:{metric}"

    def answered_key(self, version: str) -> str:
        """A hash: metric -> Unix time Meta last answered it for some media."""
        return f"{self.prefix}:metric_answered:{version}"

    async def dropped(self, version: str, metrics: Iterable[str]) -> set[str]:
        """Those of `metrics` that were dropped for `version`."""
        names = list(metrics)
        if not names:
            return set()
        flags = await self.redis.mget([self.key(version, name) for name in names])
        return {name for name, flag in zip(names, flags, strict=True) if flag is not None}

    async def drop(self, version: str, metric: str, *, reason: str) -> None:
        """Drop `metric` for every media on `version` (reason: Meta's scrubbed message)."""
        await self.redis.set(self.key(version, metric), reason[:_REASON_CHARS], ex=self.ttl_seconds)

    async def refusals(
        self, version: str, media_id: str, metrics: Iterable[str]
    ) -> dict[str, Refusal]:
        """Which of `metrics` not to ask this media, and why (one Redis round trip)."""
        names = list(metrics)
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.key(version, name) for name in names])
            pipe.hgetall(self.media_key(version, media_id))
            flags, refused = await pipe.execute()
        found = {
            name: Refusal(VERSION, _text(flag))
            for name, flag in zip(names, flags, strict=True)
            if flag is not None
        }
        for name, message in ((_text(k), _text(v)) for k, v in refused.items()):
            if name in names:
                found[name] = Refusal(MEDIA, message)  # the narrower reason wins
        return found

    async def refuse(self, version: str, media_id: str, metric: str, *, reason: str) -> bool:
        """Remember that this media refused `metric`; True when that dropped it for the version.

        The same media refusing again counts once (a set of media ids).
        """
        reason = reason[:_REASON_CHARS]
        media_key, refusers = self.media_key(version, media_id), self.refusers_key(version, metric)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(media_key, metric, reason)
            pipe.expire(media_key, self.media_ttl_seconds)
            pipe.sadd(refusers, media_id)
            pipe.expire(refusers, self.ttl_seconds)
            pipe.scard(refusers)
            pipe.hget(self.answered_key(version), metric)
            *_, count, answered = await pipe.execute()
        if count < self.drop_after or self._recent(answered):
            return False
        await self.drop(version, metric, reason=f"refused by {count} media; last: {reason}")
        await self.redis.delete(refusers)  # after the drop lapses, counting starts afresh
        return True

    async def answered(self, version: str, metrics: Iterable[str]) -> None:
        """Meta answered these metrics for some media, so they are valid for the version."""
        names = sorted(set(metrics))
        if not names:
            return
        key, now = self.answered_key(version), int(time.time())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=dict.fromkeys(names, now))
            pipe.expire(key, self.answer_window_seconds)
            await pipe.execute()

    def _recent(self, answered: bytes | str | None) -> bool:
        if answered is None:
            return False
        try:
            return time.time() - float(_text(answered)) < self.answer_window_seconds
        except ValueError:
            return False
