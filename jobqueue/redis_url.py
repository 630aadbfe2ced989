"""REDIS_URL, read in one place for every Redis connection of the service.

Two kinds of URL. One server: `redis://`, `rediss://`, `unix://`, handed to arq and redis-py
unchanged. Or Redis Sentinel: `redis+sentinel://[[user]:password@]host:port[,host:port...]/
<master>[/<db>]` (`sentinel://` too; port 26379 when left out): every connection asks the
sentinels for the master's address when it connects, so after a failover a reconnect finds the
new master without a restart. The password is the master's; the sentinels are asked without
one (as arq does). https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import Sentinel, SentinelConnectionPool

from core.errors import ConfigError
from core.redaction import MASK, scrub

SERVER_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "sentinel")
SENTINEL_PORT = 26379
KINDS = "a redis://, rediss://, unix:// or redis+sentinel:// URL"

AsyncClient = TypeVar("AsyncClient", bound="redis.asyncio.Redis")


@dataclass(frozen=True)
class RedisTarget:
    """Where REDIS_URL points: one server (`sentinels` empty; `url` as given), or the master
    `master` that `sentinels` know, with the database and credentials of the master."""

    url: str = field(repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    database: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(url: str) -> RedisTarget:
    """The target REDIS_URL names; ConfigError (one line, password masked) when it names none."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    try:
        if scheme in SENTINEL_SCHEMES:
            return _sentinel_target(url)
        if scheme not in SERVER_SCHEMES:
            msg = f"unknown scheme {scheme!r}" if scheme else "no scheme"
            raise ValueError(msg)
        RedisSettings.from_dsn(url)  # what the worker will read: refuse what it would refuse
    except (RuntimeError, ValueError) as exc:
        msg = _without_credentials(f"REDIS_URL is not {KINDS}: {exc}", url)
        raise ConfigError(msg) from None
    return RedisTarget(url)


def _sentinel_target(url: str) -> RedisTarget:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        msg = "a Sentinel URL takes no ?options or #fragment"
        raise ValueError(msg)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_address(host) for host in hosts.split(","))
    master, _, database = parts.path.strip("/").partition("/")
    if not master:
        msg = "the master's name is missing (redis+sentinel://host:26379/<master>)"
        raise ValueError(msg)
    if database and not database.isdigit():
        msg = f"the database after the master's name is not a number: {database!r}"
        raise ValueError(msg)
    return RedisTarget(
        url,
        sentinels,
        unquote(master),
        int(database or 0),
        unquote(username) or None,
        unquote(password) or None,
    )


def _address(host: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`, with the Sentinel port by default."""
    found = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?", host)
    if found is None or not 0 < int(found[3] or SENTINEL_PORT) < 65536:
        msg = f"not a sentinel host[:port]: {host!r}"
        raise ValueError(msg)
    return found[1] or found[2], int(found[3] or SENTINEL_PORT)


def _without_credentials(message: str, url: str) -> str:
    """`message` with the URL's credentials masked: as given, decoded, and in any quoted piece
    of the URL that overlaps them (an unescaped `/` in a password ends the host part early,
    so an error would quote the password's head as a host, or its tail as a path)."""
    found = re.search(r"://(.*)@", url)  # up to the last `@`: all of a malformed userinfo
    if found is None:
        return scrub(message)
    start, end = found.span(1)
    userinfo = found[1]
    password = userinfo.partition(":")[2]
    secrets = sorted({userinfo, password, unquote(userinfo), unquote(password)} - {""}, key=len)

    def mask(quoted: re.Match[str]) -> str:
        piece = quoted[1]
        at = [m.start() for m in re.finditer(re.escape(piece), url)] if piece else []
        return f"'{MASK}'" if any(a < end and a + len(piece) > start for a in at) else quoted[0]

    return scrub(re.sub(r"'([^']*)'", mask, message), reversed(secrets))


def arq_settings(target: RedisTarget) -> RedisSettings:
    """arq's connection settings: `from_dsn` for one server, `sentinel=True` otherwise."""
    if not target.is_sentinel:
        return RedisSettings.from_dsn(target.url)
    return RedisSettings(
        host=list(target.sentinels),
        sentinel=True,
        sentinel_master=target.master,
        database=target.database,
        username=target.username,
        password=target.password,
    )


def _master_options(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a Sentinel: the master's connections get the database and the
    credentials; the sentinels' get only the socket options (timeouts), as redis-py does."""
    auth = {"db": target.database, "username": target.username, "password": target.password}
    return auth | options


def sync_client(target: RedisTarget, **options: Any) -> redis.Redis:
    """A blocking client (`options`: socket timeouts and the like); close with `close_sync`."""
    if not target.is_sentinel:
        return redis.Redis.from_url(target.url, **options)
    # redis-py's Sentinel classes are untyped: hence the ignores and the casts below.
    kwargs = _master_options(target, options)
    sentinel = Sentinel(list(target.sentinels), **kwargs)  # type: ignore[no-untyped-call]
    return cast(redis.Redis, sentinel.master_for(target.master))  # type: ignore[no-untyped-call]


def async_client(
    target: RedisTarget, redis_class: type[AsyncClient], **options: Any
) -> AsyncClient:
    """An asyncio client of `redis_class` (Redis, or arq's ArqRedis to enqueue) that owns its
    pool and connects on first use; close with `close_async`."""
    if not target.is_sentinel:
        pool = redis.asyncio.ConnectionPool.from_url(target.url, **options)
        return cast(AsyncClient, redis_class.from_pool(pool))
    kwargs = _master_options(target, options)
    sentinel = AsyncSentinel(list(target.sentinels), **kwargs)  # type: ignore[no-untyped-call]
    return cast(AsyncClient, sentinel.master_for(target.master, redis_class=redis_class))


def arq_client(target: RedisTarget, **options: Any) -> ArqRedis:
    """An ArqRedis without arq.create_pool's startup ping (it connects on first use)."""
    return async_client(target, ArqRedis, **options)


def close_sync(client: redis.Redis) -> None:
    """Close the client, its pool and, with Sentinel, the connections to the sentinels."""
    pool = client.connection_pool
    client.close()  # and the pool, which the client owns
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            sentinel.close()


async def close_async(client: redis.asyncio.Redis) -> None:
    """Close the client, its pool and, with Sentinel, the connections to the sentinels."""
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    await close_sentinels(pool)


async def close_sentinels(pool: redis.asyncio.ConnectionPool) -> None:
    """The sentinels' connections of a Sentinel pool (arq's too, which arq leaves open)."""
    if isinstance(pool, AsyncSentinelPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()
