"""Libraries' routine lines demoted to DEBUG, so INFO says what changed and nothing else.

arq writes two INFO lines per job (every scheduler tick and sweep, thousands of captures whose
outcome workers.captures.jobs already logs with its ids) and one per lane at shutdown; uvicorn
narrates its shutdown in four. The process's own "SIGTERM received: shutting down" is its one
shutdown line. A filter on the library's logger rewrites the level before any handler sees
the record, and drops it when DEBUG is off.
"""

from __future__ import annotations

import logging
import re

# Message formats (record.msg) that are routine, per logger.
ROUTINE: dict[str, tuple[str, ...]] = {
    "arq.worker": ("%6.2fs → ", "%6.2fs ← ", "%6.2fs ↻ ", "shutdown on ", "recording health"),
    "uvicorn.error": (
        "Shutting down",
        "Waiting for application shutdown",
        "Application shutdown complete",
        "Finished server process",
        "Waiting for connections to close",
        "Waiting for background tasks",
    ),
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Demote(logging.Filter):
    """INFO records whose format starts with one of `prefixes` become DEBUG records."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not str(record.msg).startswith(self.prefixes):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def install() -> None:
    """Put one Demote filter on each library logger (again after a second setup: replaced)."""
    for name, prefixes in ROUTINE.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Demote)]:
            logger.removeFilter(old)
        logger.addFilter(Demote(prefixes))


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (uvicorn's `color_message`, coloured tracebacks)."""
    return ANSI.sub("", text)
