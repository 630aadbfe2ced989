"""docs/simulator.md covers every control route, command-line option and setting of metasim."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from starlette.routing import Route

from metasim import control
from metasim.__main__ import parse_args
from metasim.world.entities import SimConfig
from metasim.world.world import World

PAGE = Path(__file__).resolve().parent.parent / "docs" / "simulator.md"


def page_text() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_every_control_route_is_documented() -> None:
    """A route added to metasim/control.py without a line in the page fails here."""
    page = page_text()
    routes = [route for route in control.routes(World()) if isinstance(route, Route)]
    assert routes
    missing = [
        f"{method} /_sim{route.path}"
        for route in routes
        for method in sorted((route.methods or set()) - {"HEAD"})
        if f"| `{method} /_sim{route.path}` |" not in page
    ]
    assert missing == []


def test_every_option_and_setting_is_documented() -> None:
    """Each `python -m metasim` option and each SimConfig field has its row."""
    page = page_text()
    options = list(vars(parse_args([])))
    assert options
    for name in options:
        assert f"| `--{name.replace('_', '-')}` |" in page, name
    for field in dataclasses.fields(SimConfig):
        assert f"| `{field.name}` | `{field.default}` |".replace(".0`", "`") in page, field.name
