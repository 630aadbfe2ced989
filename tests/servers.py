"""Real servers for tests: an ASGI app under uvicorn in a thread, and a private redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

if TYPE_CHECKING:
    from core.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll `predicate` until it returns something truthy; fail loudly after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s: {predicate}"
            raise TimeoutError(msg)
        time.sleep(interval)


class ServerThread:
    """Serve an ASGI app on 127.0.0.1 in a background thread (the pattern of httpx's tests)."""

    def __init__(self, app: Any, *, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class PrivateRedis:
    """A redis-server of the test's own on its own port, to stop and start at will."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="archiver-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Listening:
    """`archiver serve`'s own servers (receiver, ops listener) on free ports, in one event loop
    in a background thread: the real protocol limits over real sockets."""

    def __init__(self, app: Any, settings: Settings) -> None:
        from archiver.listeners import make_servers

        ports = {"port": free_port(), "metrics_port": free_port()}
        self.settings = settings.model_copy(update=ports)
        self.servers = make_servers(app, self.settings)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from archiver.commands.serve import run_async
        from archiver.listeners import run_servers

        run_async(run_servers(self.servers))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics_port}"

    def __enter__(self) -> Listening:
        self.thread.start()
        wait_until(lambda: all(server.started for server in self.servers), timeout=10)
        return self

    def __exit__(self, *_exc: object) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(timeout=10)
