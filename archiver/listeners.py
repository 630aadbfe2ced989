"""The receiver's uvicorn servers: the public webhook port and the ops listener, in one loop.

Each runs uvloop and the httptools protocol with the receiver's socket limits (header size,
request time: receiver/protocol.py) plus uvicorn's own: idle keep-alive connections closed after
KEEPALIVE_TIMEOUT_SECONDS, and 503 once MAX_CONNECTIONS are open. Signals are the caller's.
uvicorn is imported when a server is built, so `archiver --help` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from core.errors import ArchiverError, ConfigError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from core.config import Settings

log = logging.getLogger(__name__)
STARTUP_POLL = 0.05
FD_RESERVE = 64  # files beside the connections: database, Redis, logs, the ops listener
OPS_MAX_CONNECTIONS = 32  # Prometheus and a health checker or two; never the internet's load


def make_server(
    app: Starlette,
    settings: Settings,
    *,
    address: tuple[str, int] | None = None,
    lifespan: Literal["on", "off"] = "on",
    max_connections: int | None = None,
) -> uvicorn.Server:
    """A uvicorn Server on `address` (default HOST:PORT) with the socket limits of `settings`."""
    import uvicorn

    from receiver.protocol import Limits, limited_protocol

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    host, port = address or (settings.host, settings.port)
    limits = Limits(settings.max_header_bytes, settings.request_timeout_seconds)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=limited_protocol(limits),
        lifespan=lifespan,
        access_log=False,
        log_config=None,  # our handler (text or JSON, redacting) stays in charge
        workers=1,
        timeout_keep_alive=settings.keepalive_timeout_seconds,
        limit_concurrency=max_connections or settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # should h11 ever be used
    )
    return QuietServer(config)


def make_servers(app: Starlette, settings: Settings) -> list[uvicorn.Server]:
    """The receiver on HOST:PORT, then (unless METRICS_PORT is 0) the ops listener on
    METRICS_HOST:METRICS_PORT, which shares the receiver's state and lifespan."""
    from receiver.app import create_ops_app

    fit_open_files(settings.max_connections)
    servers = [make_server(app, settings)]
    if settings.metrics_port:
        if (settings.metrics_host, settings.metrics_port) == (settings.host, settings.port):
            msg = f"METRICS_PORT {settings.metrics_port} is also PORT: choose another (0: off)"
            raise ConfigError(msg)
        ops = create_ops_app(app)
        address = (settings.metrics_host, settings.metrics_port)
        limit = OPS_MAX_CONNECTIONS
        servers.append(
            make_server(ops, settings, address=address, lifespan="off", max_connections=limit)
        )
    return servers


def fit_open_files(max_connections: int) -> int:
    """Raise the soft open-file limit to MAX_CONNECTIONS plus a reserve (at most the hard
    limit), so a full house gets 503s rather than "Too many open files"; warn when it cannot.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < need:
        log.warning(
            "the open-file limit (%d) is below MAX_CONNECTIONS + %d: lower MAX_CONNECTIONS "
            "or raise the limit (ulimit -n, LimitNOFILE, docker --ulimit nofile)",
            target,
            FD_RESERVE,
        )
    return target


async def run_server(server: uvicorn.Server, name: str = "receiver") -> None:
    """Serve until told to stop; a failed startup becomes one ArchiverError, not SystemExit."""
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits this way when binding or the lifespan fails
        hint = " (METRICS_PORT in use? 0 turns it off)" if name == "ops listener" else ""
        msg = f"the {name} could not start{hint} (see the log above)"
        raise ArchiverError(msg) from exc


async def run_servers(servers: Sequence[uvicorn.Server]) -> None:
    """Serve them all; when one stops or fails to start, stop the others, then raise the
    first failure."""
    names = ["receiver", "ops listener"]
    tasks = [asyncio.create_task(run_server(s, n)) for s, n in zip(servers, names, strict=False)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def announce_when_started(servers: Sequence[uvicorn.Server], settings: Settings) -> None:
    """Print the addresses once uvicorn listens, so scripts (and people) know it is up."""
    while not all(server.started for server in servers):
        await asyncio.sleep(STARTUP_POLL)
    print(f"receiver listening on http://{settings.host}:{settings.port}", flush=True)
    if len(servers) > 1:
        ops = f"http://{settings.metrics_host}:{settings.metrics_port}"
        print(f"ops listener (/metrics, /readyz) on {ops}", flush=True)
