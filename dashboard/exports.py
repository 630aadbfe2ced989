"""`/export/{fmt}`: what a page shows, as CSV or JSON lines, through `archiver export`'s writer.

The writer is synchronous and writes to a file, so it runs in a thread into a spooled
temporary file (memory up to SPOOL_BYTES, then disk) that is streamed out in chunks: a large
export costs disk, not the server's memory. `export` is imported here, in the handler, so the
other pages never depend on it.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from core.errors import ArchiverError
from core.redaction import scrub

FORMATS = ("csv", "jsonl")
SPOOL_BYTES = 8 * 1024 * 1024
CHUNK = 64 * 1024
FILTERS = ("account", "platform", "subject_type", "subject_id")


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def build_query(request: Request) -> Any:
    """The ExportQuery the URL names; ValueError for an unknown view or a bad timestamp."""
    module = importlib.import_module("export.query")
    params = request.query_params
    view = params.get("view", "metric_history")
    if view not in module.VIEWS:
        msg = f"unknown view {view!r}: one of {', '.join(sorted(module.VIEWS))}"
        raise ValueError(msg)
    filters = {name: params.get(name) or None for name in FILTERS}
    return module.ExportQuery(
        view=view,
        since=_when(params.get("since")),
        until=_when(params.get("until")),
        metrics=tuple(params.getlist("metric")),
        **filters,
    )


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        spool.seek(0)
        while chunk := spool.read(CHUNK):
            yield chunk


async def export(request: Request) -> Response:
    fmt = request.path_params["fmt"]
    if fmt not in FORMATS:
        return PlainTextResponse(f"format {fmt!r}: one of {', '.join(FORMATS)}\n", 404)
    try:  # by name: typed as Any, so this module checks with or without `export`
        writers = importlib.import_module("export.writers")
        query = build_query(request)
    except ImportError:
        return PlainTextResponse("export is not available in this installation\n", 501)
    except ValueError as exc:
        return PlainTextResponse(f"{exc}\n", 400)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by _chunks
    try:
        await run_in_threadpool(writers.write_export, request.app.state.engine, query, fmt, spool)
    except (ArchiverError, ValueError) as exc:  # e.g. an account that does not exist
        spool.close()
        return PlainTextResponse(f"{scrub(str(exc))}\n", 400)
    name = f"{query.view}.{fmt}"
    return StreamingResponse(
        iterate_in_threadpool(_chunks(spool)),
        media_type=writers.media_type(fmt),
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
