"""`archiver demo`: a zero-config tour of the whole service, gone again in under a minute.

Everything runs in this process on one event loop, on throwaway resources: a SQLite file in a
temporary directory, an embedded Redis on a unix socket, the Meta simulator and the receiver
under uvicorn on free 127.0.0.1 ports (sockets bound here, so no port can be taken between
choosing and listening), and one arq worker. Settings come from arguments only (never the
environment), with seconds where production has hours, and stories are posted nearly a day
ago so they expire during the tour. Every exit path, Ctrl+C included, stops all of it and
removes the directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archiver.commands import add_command
from archiver.commands.serve import run_async
from archiver.embedded import EmbeddedRedis
from archiver.listeners import make_server
from core.errors import ArchiverError

if TYPE_CHECKING:
    import uvicorn
    from arq.worker import Worker

    from archiver.commands import SubParsers
    from archiver.demo_world import DemoStory
    from core.config import Settings
    from metasim import World

TIMEOUT = 50.0  # the whole tour; the slowest step (story A's final) is due after ~12 s
POLL = 0.25
NEXT_STEPS = """\
Next:
  README.md        how it works, every setting, the SQL views and more example queries
  archiver dashboard  what `archiver run` archives, as web pages on http://127.0.0.1:8001:
                   each story's curves across its versions, Threads profiles, deliveries
  archiver run     the same pieces for real: set META_APP_SECRET and META_VERIFY_TOKEN, then
                   `archiver accounts add --name N --ig-user-id ID --ig-token -` (token on stdin)"""


def register(subparsers: SubParsers) -> None:
    demo = add_command(
        subparsers,
        "demo",
        help_text="a zero-config tour: capture simulated stories, then query them",
        description="Start an embedded Redis, a temporary SQLite file, the Meta simulator, the "
        "receiver and a worker; watch stories being captured as versioned snapshots, a signed "
        "webhook becoming the next version, and an example SQL query; then remove it all. "
        "Needs no settings and ignores the environment. Takes about 20 seconds.",
    )
    demo.add_argument("--verbose", action="store_true", help="show the components' logs")
    demo.add_argument(
        "--keep",
        type=Path,
        metavar="FILE",
        help="keep the tour's archive as this SQLite file, to browse with `archiver dashboard`",
    )
    demo.set_defaults(handler=run_demo, needs_settings=False)


@dataclass
class Stage:
    """What the tour runs on, set up before the event loop starts."""

    settings: Settings
    world: World
    ig_user_id: str
    stories: list[DemoStory]
    sim_socket: socket.socket
    receiver_socket: socket.socket
    started: float

    def say(self, line: str) -> None:
        print(f"{time.monotonic() - self.started:6.1f}s  {line}", flush=True)


def run_demo(args: argparse.Namespace, _settings: Settings | None) -> int:
    """The tour; the environment's settings are ignored on purpose (see DemoSettings)."""
    started = time.monotonic()
    if args.keep is not None and args.keep.exists():
        msg = f"--keep {args.keep}: the file exists; give a new name"
        raise ArchiverError(msg)
    workdir = Path(tempfile.mkdtemp(prefix="archiver-demo-"))
    print(f"archiver demo: everything lives in {workdir} and is removed at the end", flush=True)
    try:
        with contextlib.ExitStack() as stack:
            stage = _set_up(stack, workdir, verbose=args.verbose, started=started)
            run_async(tour(stage))
        if args.keep is not None:
            keep(workdir / "archiver.db", args.keep)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"stopped everything; removed {workdir}", flush=True)
    print(f"\nDone in {time.monotonic() - started:.0f} s.\n{NEXT_STEPS}", flush=True)
    if args.keep is not None:
        print(dashboard_hint(args.keep), flush=True)
    return 0


def keep(database: Path, target: Path) -> None:
    """Copy the tour's SQLite archive (WAL folded in) to `target`, for the dashboard."""
    import sqlite3

    with (
        contextlib.closing(sqlite3.connect(database)) as source,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)
    print(f"kept the archive as {target}", flush=True)


def dashboard_hint(kept: Path) -> str:
    url = f"sqlite:///{kept.resolve()}"
    return f"\nBrowse what the tour captured:\n  DATABASE_URL={url} archiver dashboard"


def _set_up(stack: contextlib.ExitStack, workdir: Path, *, verbose: bool, started: float) -> Stage:
    """Ports, Redis, settings, schema, simulated world and registered account, in that order."""
    from archiver.demo_world import demo_settings, populate
    from archiver.logs import setup_logging
    from metasim import World
    from models.db import create_db_engine
    from models.migrate import upgrade

    sim_socket = stack.enter_context(_listening_socket())
    receiver_socket = stack.enter_context(_listening_socket())
    redis = stack.enter_context(EmbeddedRedis())
    settings = demo_settings(
        database_url=f"sqlite:///{workdir / 'archiver.db'}",
        redis_url=redis.url,
        sim_url=_url(sim_socket),
        port=receiver_socket.getsockname()[1],
        verbose=verbose,
    )
    setup_logging(settings)
    upgrade(settings.database_url)
    world = World(minute_seconds=1.0)
    engine = create_db_engine(settings.database_url)
    try:
        ig_user_id, stories = populate(world, engine)
    finally:
        engine.dispose()
    print(f"embedded Redis: redis-server pid {redis.pid} at {redis.url}", flush=True)
    print(f"SQLite: {workdir / 'archiver.db'} (migrated)", flush=True)
    return Stage(settings, world, ig_user_id, stories, sim_socket, receiver_socket, started)


def _listening_socket() -> socket.socket:
    """A TCP socket bound to a free 127.0.0.1 port, for uvicorn to listen on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


async def tour(stage: Stage) -> None:
    """Serve the simulator and the receiver, then run the worker and show what it does."""
    import metasim
    from receiver.app import create_app
    from workers.main import build_workers
    from workers.running import close_workers, run_lanes

    sim = make_server(metasim.create_app(stage.world), stage.settings)
    receiver = make_server(create_app(stage.settings), stage.settings)
    servers = {"simulator": sim, "receiver": receiver}
    tasks = {
        "simulator": asyncio.create_task(_serve(sim, stage.sim_socket)),
        "receiver": asyncio.create_task(_serve(receiver, stage.receiver_socket)),
    }
    workers: list[Worker] = []
    try:
        await _until_listening(servers, tasks)
        stage.say(f"Meta simulator on {_url(stage.sim_socket)} (stands in for graph.facebook.com)")
        stage.say(f"receiver on {_url(stage.receiver_socket)}/webhooks/instagram")
        # Only now: the worker lists stories at once, and a refused call would wait a minute.
        workers = build_workers(stage.settings, handle_signals=False, poll_delay=0.1)
        tasks["worker"] = asyncio.create_task(run_lanes(workers))
        stage.say("worker started: stories listed every 2 s, snapshots every 5 s, final 8 s early")
        await show(stage, tasks)
    finally:
        try:
            if workers:
                tasks["worker"].cancel()
                await asyncio.gather(tasks["worker"], return_exceptions=True)
                await close_workers(workers)
        finally:  # the servers stop even when closing the worker failed
            for server in servers.values():
                server.should_exit = True
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve on `sock`; a failed startup becomes an ArchiverError, not SystemExit."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        msg = "a server of the demo could not start (run `archiver demo --verbose`)"
        raise ArchiverError(msg) from exc


async def _until_listening(
    servers: dict[str, uvicorn.Server], tasks: dict[str, asyncio.Task[None]]
) -> None:
    deadline = time.monotonic() + 10
    while not all(server.started for server in servers.values()):
        _check(tasks)
        if time.monotonic() > deadline:
            msg = "the simulator and receiver did not start within 10 s"
            raise ArchiverError(msg)
        await asyncio.sleep(0.02)


def _check(tasks: dict[str, asyncio.Task[None]]) -> None:
    """A part that stopped by itself ends the tour with its reason."""
    for name, task in tasks.items():
        if task.done():
            error = None if task.cancelled() else task.exception()
            if isinstance(error, ArchiverError):
                raise error
            msg = f"the {name} stopped unexpectedly: {error!r} (run `archiver demo --verbose`)"
            raise ArchiverError(msg) from error


async def show(stage: Stage, tasks: dict[str, asyncio.Task[None]]) -> None:
    """Progress until story A's final and its webhook version, then the versions and a query."""
    from archiver.demo_world import Progress, report
    from models.db import create_db_engine

    engine = create_db_engine(stage.settings.database_url)
    progress = Progress(engine, stage.stories)
    first = stage.stories[0]
    deadline = stage.started + TIMEOUT

    async def watch(done: Callable[[], bool], what: str) -> None:
        while True:
            for line in await asyncio.to_thread(progress.poll):
                stage.say(line)
            if done():
                return
            _check(tasks)
            if time.monotonic() > deadline:
                msg = (
                    f"{what} did not happen within {TIMEOUT:.0f} s (run `archiver demo --verbose`)"
                )
                raise ArchiverError(msg)
            await asyncio.sleep(POLL)

    try:
        final = f"story {first.label}'s final capture"
        await watch(lambda: bool({first.media_id} & (progress.finals | progress.missed)), final)
        if first.media_id in progress.missed:
            msg = f"{final} was missed (run `archiver demo --verbose` to see why)"
            raise ArchiverError(msg)
        await send_webhook(stage, first)
        await watch(lambda: first.media_id in progress.webhooks, "the webhook's version")
        print("\n".join(report(engine, stage.stories)), flush=True)
    finally:
        engine.dispose()


async def send_webhook(stage: Stage, story: DemoStory) -> None:
    """POST a story_insights delivery signed like Meta's, as Meta would an hour after expiry."""
    import httpx

    from metasim import deliver, story_insights_payload

    assert stage.settings.meta_app_secret is not None  # demo_settings always sets it
    value = stage.world.story_webhook_value(story.media_id)
    delivery = deliver(
        story_insights_payload(stage.ig_user_id, value),
        stage.settings.meta_app_secret.get_secret_value(),
    )
    url = f"{_url(stage.receiver_socket)}/webhooks/instagram"
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.post(url, content=delivery.body, headers=delivery.headers)
    stage.say(
        f"POST /webhooks/instagram: story_insights of story {story.label}, signed "
        f"X-Hub-Signature-256 -> {response.status_code} (stored, then relayed to the worker)"
    )
    if response.status_code != 200:
        msg = f"the receiver answered {response.status_code} to a correctly signed delivery"
        raise ArchiverError(msg)
