"""`archiver serve`: the receiver alone under uvicorn (uvloop, httptools, one process), with
its ops listener (archiver/listeners.py).

Signals are ours, not uvicorn's: uvicorn re-raises a captured SIGTERM after its shutdown, which
would end the process "killed by signal" instead of with exit status 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from archiver.commands import add_command, open_database
from archiver.listeners import announce_when_started, make_servers, run_servers
from core.errors import ArchiverError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from archiver.commands import SubParsers
    from core.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def add_address_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default: HOST, 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="TCP port (default: PORT, 8000)")


def port_number(text: str) -> int:
    """argparse type: a TCP port, refused with a plain message otherwise."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        msg = f"invalid port {text!r} (expected 1-65535)"
        raise argparse.ArgumentTypeError(msg)
    return port


def register(subparsers: SubParsers) -> None:
    serve = add_command(
        subparsers,
        "serve",
        help_text="run the webhook receiver only",
        description="Receive Meta's webhooks: handshake, signature check, durable archive, "
        "hand-off to workers through REDIS_URL. Needs META_APP_SECRET and META_VERIFY_TOKEN "
        "and a migrated database (`archiver db upgrade`).",
    )
    add_address_arguments(serve)
    serve.set_defaults(handler=run_serve)


def with_address(settings: Settings, args: argparse.Namespace) -> Settings:
    """Settings with --host/--port applied over HOST/PORT."""
    update = {key: getattr(args, key) for key in ("host", "port") if getattr(args, key)}
    return settings.model_copy(update=update) if update else settings


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = with_address(settings, args)
    settings.require_receiver_secrets()
    open_database(settings).dispose()  # refuse an unmigrated database before listening
    from receiver.app import create_app

    app = create_app(settings)
    return run_async(serve_receiver(app, settings))


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on a uvloop event loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class Shutdown:
    """SIGINT/SIGTERM ask every part to stop gracefully; a second signal forces it."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.event = asyncio.Event()
        self._graceful: list[Callable[[], None]] = []
        self._forced: list[Callable[[], None]] = []

    def on_stop(self, graceful: Callable[[], None], forced: Callable[[], None]) -> None:
        self._graceful.append(graceful)
        self._forced.append(forced)

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle, sig)

    def handle(self, sig: int) -> None:
        callbacks = self._forced if self.signal is not None else self._graceful
        if self.signal is None:
            self.signal = sig
            log.info("%s received: shutting down", signal.Signals(sig).name)
        self.event.set()
        for callback in callbacks:
            callback()

    @property
    def exit_code(self) -> int:
        """0 after SIGTERM (a service manager stopping us), 130 after Ctrl+C, like a shell."""
        return 130 if self.signal == signal.SIGINT else 0


def stop_server(server: uvicorn.Server, shutdown: Shutdown) -> None:
    def force() -> None:
        server.force_exit = True

    def graceful() -> None:
        server.should_exit = True

    shutdown.on_stop(graceful, force)


async def serve_receiver(app: Starlette, settings: Settings) -> int:
    servers = make_servers(app, settings)
    shutdown = Shutdown()
    shutdown.install()
    for server in servers:
        stop_server(server, shutdown)
    announce = asyncio.create_task(announce_when_started(servers, settings))
    try:
        await run_servers(servers)
    finally:
        announce.cancel()
    if not servers[0].started and shutdown.signal is None:
        msg = "the receiver stopped before it started listening"
        raise ArchiverError(msg)
    return shutdown.exit_code
