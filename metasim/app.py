"""The simulator's ASGI app: Meta's routes behind one pipeline, and the /_sim control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from metasim import control
from metasim.api.pipeline import answer
from metasim.world.world import World


def create_app(world: World) -> Starlette:
    """The simulator serving `world`: Meta's hosts at `/`, the control API at `/_sim`."""

    async def meta(request: Request) -> Response:
        return await answer(world, request)

    return Starlette(
        routes=[
            Mount("/_sim", routes=control.routes(world)),
            Route("/{path:path}", meta, methods=["GET", "POST", "DELETE"]),
        ]
    )
