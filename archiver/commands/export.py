"""`archiver export`: rows of metric_history (or another documented view) out as a file.

Standard output by default, so an export composes with shell tools (`| gzip`, `| head`); the
rows stream in batches (export package), so memory stays flat whatever the archive's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from archiver.commands import add_command, open_database
from archiver.commands.replay import iso_timestamp
from core.errors import ConfigError
from export.query import FORMATS, VIEWS

if TYPE_CHECKING:
    from archiver.commands import SubParsers
    from core.config import Settings

REDRAW_EVERY = 0.2  # seconds between redraws of the progress line


def register(subparsers: SubParsers) -> None:
    export = add_command(
        subparsers,
        "export",
        help_text="rows of metric_history or another view as CSV, JSON lines or Parquet",
        description="Write the rows of metric_history (or of --view) with the view's column "
        "names: timestamps in UTC ISO 8601, nulls kept as nulls (CSV: empty). Streams in "
        "batches; to standard output unless --output names a file.",
    )
    export.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    export.add_argument("--output", "-o", default="-", metavar="FILE|-", help="default: -")
    export.add_argument("--view", choices=VIEWS, default="metric_history")
    export.add_argument("--since", type=iso_timestamp, metavar="ISO8601", help="from (incl.)")
    export.add_argument("--until", type=iso_timestamp, metavar="ISO8601", help="to (excl.)")
    export.add_argument("--account", metavar="NAME|ID", help="one account, by name or id")
    export.add_argument("--platform", choices=("instagram", "threads"))
    export.add_argument(
        "--subject-type", choices=("story", "feed", "reel", "threads_post", "threads_user")
    )
    export.add_argument("--metric", action="append", default=[], metavar="NAME", help="repeatable")
    export.add_argument("--subject-id", metavar="ID", help="one media id or Threads user id")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from export.query import ExportQuery
    from export.writers import write_export

    query = ExportQuery(
        view=args.view,
        since=args.since,
        until=args.until,
        account=args.account,
        platform=args.platform,
        subject_type=args.subject_type,
        metrics=tuple(args.metric),
        subject_id=args.subject_id,
    )
    if args.format == "parquet":
        from export.parquet import require_pyarrow

        require_pyarrow()  # before the database is opened or a file created
    engine = open_database(settings)
    try:
        with ExitStack() as stack:
            out = _open_output(args.output, args.format, stack)
            progress = RowCount() if sys.stderr.isatty() else None
            if progress is not None:
                stack.callback(progress.close)
            write_export(engine, query, args.format, out, progress=progress)
            out.flush()
            if out.name != args.output and args.output != "-":
                _publish(out.name, args.output)
    finally:
        engine.dispose()
    return 0


def _open_output(path: str, fmt: str, stack: ExitStack) -> BinaryIO:
    """The binary stream to write: standard output, or a temporary file beside `path` that
    is renamed to it once the export is complete (and removed when it is not); a device or
    a named pipe is written directly."""
    target = Path(path)
    if path != "-" and target.exists() and not target.is_file():
        return cast(BinaryIO, stack.enter_context(open(path, "wb")))  # /dev/null, a FIFO
    if path != "-":
        try:
            part = tempfile.NamedTemporaryFile(  # noqa: SIM115  # the stack closes it
                dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
            )
        except OSError as exc:
            msg = f"cannot write {path}: {exc.strerror}"
            raise ConfigError(msg) from exc
        stack.callback(_discard, Path(part.name))
        stack.enter_context(part)
        return cast(BinaryIO, part)
    if fmt == "parquet" and sys.stdout.isatty():
        msg = "parquet is binary: redirect it (> FILE) or use --output FILE"
        raise ConfigError(msg)
    return sys.stdout.buffer


def _publish(part: str, path: str) -> None:
    """Give the complete file its name (a failed export leaves none) and the mode a file
    created by `open` would have had (the temporary file is private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(part, 0o666 & ~umask)
    os.replace(part, path)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)  # gone already when the export completed and was renamed


class RowCount:
    """A one-line row counter on stderr, redrawn in place (used only on a terminal)."""

    def __init__(self) -> None:
        self.started = self.drawn = time.monotonic()
        self.rows = 0

    def __call__(self, rows: int) -> None:
        self.rows = rows
        if time.monotonic() - self.drawn >= REDRAW_EVERY:
            self.drawn = time.monotonic()
            self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\rexported {self.rows:,} rows, {elapsed:.1f}s")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw()
        sys.stderr.write("\n")
        sys.stderr.flush()
