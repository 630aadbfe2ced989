"""`archiver prune`: the command line over thinning and raw dropping, with its summary.

Opt-in and explicit: with neither a setting nor a flag saying what to prune, it says so and
exits 2 rather than guess. `--dry-run` reads the same rows and changes nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from archiver.commands import add_command, open_database
from core.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from archiver.commands import SubParsers
    from archiver.retention.raw_answers import RawOutcome
    from archiver.retention.rules import Thinning
    from archiver.retention.thinning import Tally
    from core.config import Settings

NOTHING_SET = (
    "nothing to prune: pass --thin-after DAYS and/or --raw-after DAYS, or set "
    "PRUNE_THIN_AFTER_DAYS / PRUNE_RAW_AFTER_DAYS (retention is opt-in)"
)


def register(subparsers: SubParsers) -> None:
    prune = add_command(
        subparsers,
        "prune",
        help_text="opt-in retention: thin old intermediate versions, drop old raw answers",
        description="Thin versions captured more than --thin-after days ago to one per "
        "--spacing hours per subject (first, final, webhook and newest versions are always "
        "kept; live stories, Threads user and Instagram account insights are never thinned) "
        "and drop Meta's raw answers older than --raw-after days. Flags override the PRUNE_* "
        "settings; with neither, nothing is pruned (exit 2).",
    )
    prune.add_argument(
        "--thin-after",
        type=_days,
        metavar="DAYS",
        help="default: PRUNE_THIN_AFTER_DAYS (unset: no thinning)",
    )
    prune.add_argument(
        "--spacing", type=_hours, metavar="HOURS", help="default: PRUNE_THIN_SPACING_HOURS (24)"
    )
    prune.add_argument(
        "--raw-after",
        type=_days,
        metavar="DAYS",
        help="default: PRUNE_RAW_AFTER_DAYS (unset: keep)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    prune.set_defaults(handler=run_prune)


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        msg = "must be a whole number of days, at least 1"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = 0.0
    if not hours > 0:
        msg = "must be a number of hours above 0"
        raise argparse.ArgumentTypeError(msg)
    return hours


@dataclass(frozen=True)
class Plan:
    """What one run prunes: thinning (None: none) and the raw answers' cutoff (None: none)."""

    thinning: Thinning | None
    raw_before: datetime | None
    dry_run: bool = False


def plan_of(args: argparse.Namespace, settings: Settings, now: datetime) -> Plan:
    """The flags, else the settings; ConfigError (exit 2) when neither names anything."""
    from archiver.retention.rules import Thinning

    thin_days = args.thin_after or settings.prune_thin_after_days
    raw_days = args.raw_after or settings.prune_raw_after_days
    if thin_days is None and raw_days is None:
        raise ConfigError(NOTHING_SET)
    spacing = timedelta(hours=args.spacing or settings.prune_thin_spacing_hours)
    thinning = None if thin_days is None else Thinning(now - timedelta(days=thin_days), spacing)
    raw_before = None if raw_days is None else now - timedelta(days=raw_days)
    return Plan(thinning, raw_before, args.dry_run)


def run_prune(args: argparse.Namespace, settings: Settings) -> int:
    from models.types import utcnow

    plan = plan_of(args, settings, utcnow())
    engine = open_database(settings)
    try:
        lines = prune(engine, plan)
    finally:
        engine.dispose()
    print("\n".join(lines))
    return 0


def prune(engine: Engine, plan: Plan) -> list[str]:
    """Run `plan` (progress on stderr); the summary's lines."""
    from archiver.progress import ProgressBar
    from archiver.retention.raw_answers import prune_raw
    from archiver.retention.thinning import thin

    lines = []
    if plan.thinning is not None:
        bar = ProgressBar("thinning", unit="subjects", counted="versions to delete")
        tallies = thin(engine, plan.thinning, dry_run=plan.dry_run, progress=bar)
        bar.close()
        lines += thinning_summary(plan.thinning, tallies, dry_run=plan.dry_run)
    if plan.raw_before is not None:
        bar = ProgressBar("raw answers", unit="rows", counted="partitions")
        outcome = prune_raw(engine, plan.raw_before, dry_run=plan.dry_run, progress=bar)
        bar.close()
        lines += raw_summary(outcome, dry_run=plan.dry_run)
    if plan.dry_run:
        lines.append("dry run: nothing was changed")
    return lines


def thinning_summary(thinning: Thinning, tallies: dict[str, Tally], *, dry_run: bool) -> list[str]:
    from archiver.retention.rules import NEVER_THINNED

    verb = "would delete" if dry_run else "deleted"
    hours = f"{thinning.spacing.total_seconds() / 3600:g}"
    lines = [
        f"thinning versions captured before {thinning.cutoff:%Y-%m-%d %H:%M} UTC "
        f"to one per {hours} h per subject:"
    ]
    for subject_type, tally in tallies.items():
        lines.append(
            f"  {subject_type:<13} {verb} {tally.deleted:,} versions, kept {tally.kept:,} "
            f"({tally.subjects:,} subjects)"
        )
    lines.append(f"  {', '.join(NEVER_THINNED)}: never thinned (each version holds its own days)")
    return lines


def raw_summary(outcome: RawOutcome, *, dry_run: bool) -> list[str]:
    verb, dropped = ("would delete", "would drop") if dry_run else ("deleted", "dropped")
    names = f" ({', '.join(outcome.partitions)})" if outcome.partitions else ""
    return [
        f"raw answers captured before {outcome.cutoff:%Y-%m-%d %H:%M} UTC: {verb} "
        f"{outcome.rows:,} rows; {dropped} {len(outcome.partitions)} partitions{names}"
    ]
