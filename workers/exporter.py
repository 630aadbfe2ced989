"""A worker process's /metrics listener (WORKER_METRICS_HOST:WORKER_METRICS_PORT): its own
figures (reports.worker_metrics) and the archive-wide gauges (reports.archive_metrics), served
by prometheus_client's HTTP server in a thread of its own, so a scrape never waits for the
event loop and a busy loop never delays a scrape.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from core.config import Settings
from core.errors import ArchiverError
from models.db import create_db_engine
from reports.archive_metrics import ArchiveCollector
from reports.overdue import overdue_grace

log = logging.getLogger(__name__)


def archive_collector(settings: Settings) -> ArchiveCollector:
    """The archive-wide gauges on an engine of their own (one connection: a scrape at a time)."""
    engine = create_db_engine(settings.database_url, pool_size=1, token_key=settings.token_key)
    grace = overdue_grace(settings.schedule_tick_seconds)
    return ArchiveCollector(engine, settings.redis_url, grace=grace)


class Exporter:
    """The listener and what it reads; `start` binds (ArchiverError if it cannot), `close`
    stops it and lets its connections go."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.address = (settings.worker_metrics_host, settings.worker_metrics_port)
        self.registry = registry
        self.collector = archive_collector(settings)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host, port = self.address
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            self.close()
            msg = (
                f"the worker's metrics listener could not bind {host}:{port} ({exc.strerror}): "
                "choose another WORKER_METRICS_PORT (0 turns it off)"
            )
            raise ArchiverError(msg) from None
        self.registry.register(self.collector)
        log.info("worker metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.collector.close()


def start_exporter(settings: Settings, registry: CollectorRegistry) -> Exporter | None:
    """The process's listener, started; None when WORKER_METRICS_PORT is 0."""
    if not settings.worker_metrics_port:
        return None
    exporter = Exporter(settings, registry)
    exporter.start()
    return exporter
