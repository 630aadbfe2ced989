"""The baseline: a bare Starlette POST endpoint that reads the body and answers 200.

Served by bench/ingest.py with the receiver's uvicorn settings (one process, uvloop,
httptools, no access log), so the ratio prices exactly what the receiver adds: the
signature check, the durable insert and the hand-off.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def deliver(request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


async def healthz(_request: Request) -> Response:
    return Response("ok", media_type="text/plain")


app = Starlette(
    routes=[
        Route("/webhooks/instagram", deliver, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
