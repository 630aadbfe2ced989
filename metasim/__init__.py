"""metasim: a Meta Graph API + Threads API simulator served over real HTTP.

Stands in for graph.facebook.com, graph.instagram.com and graph.threads.net in the tests,
`archiver demo` and the benchmarks: point FACEBOOK_GRAPH_URL, INSTAGRAM_GRAPH_URL and
THREADS_GRAPH_URL at it. Build a World, serve `create_app(world)`, or run
`python -m metasim --port P` and drive it through the /_sim control API.
"""

from metasim.app import create_app
from metasim.webhooks import Delivery, deliver, sign, story_insights_payload, threads_payload
from metasim.world.entities import Account, Call, SimConfig, Story, ThreadsPost, ThreadsUser, Token
from metasim.world.faults import Fault
from metasim.world.state import Conflict, NotFound
from metasim.world.world import World

__all__ = [
    "Account",
    "Call",
    "Conflict",
    "Delivery",
    "Fault",
    "NotFound",
    "SimConfig",
    "Story",
    "ThreadsPost",
    "ThreadsUser",
    "Token",
    "World",
    "create_app",
    "deliver",
    "sign",
    "story_insights_payload",
    "threads_payload",
]
