"""The Meta simulator served over real HTTP for tests: `running_metasim(...)` and a fixture.

Use the context manager anywhere, or register the fixture with
`pytest_plugins = ["tests.metasim_fixtures"]` in the root conftest and ask for `metasim`.
Starting uvicorn costs ~0.2 s: a module can serve one simulator (a module-scoped fixture
around `running_metasim()`) and call `.fresh()` at the start of each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from metasim import World, create_app
from tests.servers import ServerThread


@dataclass
class RunningSim:
    """A served simulator: `.url` (bare, every host alike), `.world` to build and inspect.

    The host URLs add a first path segment that the simulator strips and records as the
    call's `host`, so tests can tell which host a client called.
    """

    world: World
    url: str

    @property
    def facebook_url(self) -> str:
        return f"{self.url}/facebook"

    @property
    def instagram_url(self) -> str:
        return f"{self.url}/instagram"

    @property
    def threads_url(self) -> str:
        return f"{self.url}/threads"

    def settings_overrides(self) -> dict[str, str]:
        """Keyword arguments for tests.conftest.make_settings: every host -> the simulator."""
        return {
            "facebook_graph_url": self.facebook_url,
            "instagram_graph_url": self.instagram_url,
            "threads_graph_url": self.threads_url,
        }

    def fresh(self, **config: Any) -> RunningSim:
        """Empty the world and reset its config (default: throttle minutes of one second),
        so one server can serve a whole test module."""
        self.world.reset(config=True)
        self.world.configure(**({"minute_seconds": 1.0} | config))
        return self


@contextmanager
def running_metasim(world: World | None = None, **config: Any) -> Iterator[RunningSim]:
    """Serve `world` (or a new World(**config)) on 127.0.0.1 for the duration of the block."""
    world = world if world is not None else World(**config)
    with ServerThread(create_app(world)) as server:
        yield RunningSim(world, server.url)


@pytest.fixture
def metasim() -> Iterator[RunningSim]:
    """A fresh simulator; throttle "minutes" last one second so regain waits stay short."""
    with running_metasim(minute_seconds=1.0) as sim:
        yield sim


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSim]:
    """One simulator per test module (starting uvicorn costs ~0.2 s); use `sim` in tests."""
    with running_metasim() as running:
        yield running


@pytest.fixture
def sim(served: RunningSim) -> RunningSim:
    """The module's simulator, emptied and reset for this test."""
    return served.fresh()
