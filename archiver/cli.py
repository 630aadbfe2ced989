"""The `archiver` console script: parse, load settings, set up logging, run one command.

This is the one place that turns the archiver's exceptions into exit codes and a single line
on stderr; commands raise core.errors exceptions and return an exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from archiver.commands import (
    accounts,
    dashboard,
    db,
    demo,
    export,
    replay,
    run,
    serve,
    status,
    worker,
)
from archiver.logs import setup_logging
from archiver.retention import command as prune
from core.errors import ArchiverError
from core.redaction import scrub

log = logging.getLogger(__name__)

PROG = "archiver"
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl+C
INTERNAL_ERROR = 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to look), never the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def one_line(text: str) -> str:
    """`text` on a single line with anything secret-looking masked, fit for stderr."""
    return scrub(" ".join(text.split()))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Keeps what Meta throws away: Instagram story insights and Threads counters "
        "as versioned SQL snapshots. Settings come from the environment and a .env file "
        "(DATABASE_URL, REDIS_URL, META_APP_SECRET, META_VERIFY_TOKEN, ...).",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=ArgumentParser
    )
    groups = (demo, run, serve, worker, db, accounts, replay, status, export, prune, dashboard)
    for module in groups:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `archiver` and `python -m archiver`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        problem = check(args)
        if problem:
            args.parser.error(problem)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return INTERRUPTED
    except ArchiverError as exc:
        _complain(str(exc))
        return exc.exit_code
    except BrokenPipeError:  # `archiver accounts list | head`: the reader left, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        _complain(
            f"unexpected {exc.__class__.__name__}: {exc} (LOG_LEVEL=DEBUG logs the traceback)"
        )
        return INTERNAL_ERROR


def _dispatch(args: argparse.Namespace) -> int:
    """Load settings and set up logging, unless the command brings its own (`demo`), so a
    broken environment or .env never stops a command that does not read it."""
    from core.config import Settings, get_settings

    settings: Settings | None = None
    if getattr(args, "needs_settings", True):
        settings = get_settings()
        setup_logging(settings)
    status: int = args.handler(args, settings)
    return status


def _complain(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")
    sys.stderr.flush()
