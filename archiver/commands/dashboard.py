"""`archiver dashboard`: the read-only web pages over the archive, on their own listener
(DASHBOARD_HOST:DASHBOARD_PORT), never on the webhook port. Beyond loopback it refuses to start
without DASHBOARD_TOKEN (exit 2)."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from archiver.commands.serve import Shutdown, port_number, run_async, stop_server
from archiver.listeners import make_server, run_server

if TYPE_CHECKING:
    import uvicorn

    from archiver.commands import SubParsers
    from core.config import Settings


def register(subparsers: SubParsers) -> None:
    dashboard = add_command(
        subparsers,
        "dashboard",
        help_text="read-only web pages: accounts, story curves, Threads, deliveries",
        description="Serve the dashboard (default http://127.0.0.1:8001): accounts, every "
        "story's metrics across its versions, Threads profiles and posts, webhook deliveries, "
        "each with CSV/JSONL export links. Beyond loopback it needs DASHBOARD_TOKEN (HTTP basic "
        "auth password, any user, or a bearer token).",
    )
    dashboard.add_argument("--host", help="interface (default: DASHBOARD_HOST, 127.0.0.1)")
    dashboard.add_argument("--port", type=port_number, help="TCP port (default: DASHBOARD_PORT)")
    dashboard.set_defaults(handler=run_dashboard)


def dashboard_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """Settings with --host/--port applied over DASHBOARD_HOST/DASHBOARD_PORT."""
    update = {f"dashboard_{key}": getattr(args, key) for key in ("host", "port")}
    return settings.model_copy(update={k: v for k, v in update.items() if v})


def run_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.app import create_dashboard

    settings = dashboard_settings(settings, args)
    app = create_dashboard(settings)  # refuses an exposed address without a token first
    open_database(settings).dispose()  # then an unmigrated database, before listening
    address = (settings.dashboard_host, settings.dashboard_port)
    server = make_server(app, settings, address=address, max_connections=64)
    return run_async(serve_dashboard(server, settings))


async def serve_dashboard(server: uvicorn.Server, settings: Settings) -> int:
    shutdown = Shutdown()
    shutdown.install()
    stop_server(server, shutdown)
    task = asyncio.create_task(run_server(server, "dashboard"))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
        print(f"dashboard on {url} (read-only; Ctrl+C stops it)", flush=True)
    await task
    return shutdown.exit_code
