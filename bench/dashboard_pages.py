"""Dashboard benchmark: what each page costs on a large archive, per database.

Fills the archive as bench/exporting.py does (1 M metric_history rows by default: 50,000
snapshots of 6,250 stories, 20 values each) plus a media row per story, then serves
`create_dashboard` in process (httpx over ASGI, lifespan running) and times each page:
the median of several requests, after one warm-up. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from capture_procs import database
from exporting import PER_SNAPSHOT, PG_URL, T0, VERSIONS, top_up

from core.config import Settings
from dashboard.app import create_dashboard
from models.db import create_db_engine
from models.tables import Media, table_of

REPEATS = 5


@dataclass(frozen=True)
class Options:
    rows: int
    databases: list[str]
    postgres_url: str


def story_id(story: int) -> str:
    return f"179{story:014d}"  # as bench/exporting.py names the stories it generates


def media_rows(stories: int, account_id: int) -> Iterator[dict[str, object]]:
    for story in range(stories):
        yield {
            "account_id": account_id, "platform": "instagram", "subject_type": "story",
            "media_id": story_id(story), "posted_at": T0, "discovered_at": T0,
            "capture_state": "final_captured",
        }  # fmt: skip


def add_media(url: str, stories: int) -> None:
    engine = create_db_engine(url)
    media = table_of(Media)
    with engine.begin() as conn:
        conn.execute(media.insert(), list(media_rows(stories, account_id=1)))
    engine.dispose()


def pages(stories: int) -> dict[str, str]:
    middle = story_id(stories // 2)
    return {
        "accounts": "/",
        "story": f"/stories/{middle}",
        "deliveries": "/deliveries",
        "story export (csv)": f"/export/csv?view=metric_history&subject_id={middle}",
    }


async def time_pages(url: str, stories: int) -> list[tuple[str, float, int]]:
    """(page, median ms, bytes) per page, through the app's ASGI interface, lifespan running."""
    app = create_dashboard(Settings(database_url=url))
    transport = httpx.ASGITransport(app=app)
    found = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client,
    ):
        for name, path in pages(stories).items():
            first = await client.get(path)
            if first.status_code != 200:
                sys.exit(f"{name}: {path} answered {first.status_code}")
            took = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                await client.get(path)
                took.append((time.perf_counter() - started) * 1000)
            found.append((name, statistics.median(took), len(first.content)))
    return found


def bench_database(kind: str, opts: Options) -> None:
    stories = opts.rows // PER_SNAPSHOT // VERSIONS
    with tempfile.TemporaryDirectory() as tmp, database(kind, opts.postgres_url, Path(tmp)) as url:
        started = time.monotonic()
        top_up(url, opts.rows)
        add_media(url, stories)
        print(
            f"{kind}: {opts.rows:,} rows, {stories:,} stories in {time.monotonic() - started:.0f} s"
        )
        for name, ms, size in asyncio.run(time_pages(url, stories)):
            print(f"  {kind:<10} {name:<20} {ms:8.1f} ms  {size / 1024:7.1f} KiB", flush=True)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="metric_history rows (1 M)")
    p.add_argument("--database", choices=("both", "sqlite", "postgresql"), default="both")
    p.add_argument("--postgres-url", default=PG_URL)
    p.add_argument("--quick", action="store_true", help="smoke run: 3,200 rows")
    args = p.parse_args(argv)
    rows = 3_200 if args.quick else args.rows
    if rows % (PER_SNAPSHOT * VERSIONS):
        p.error(f"--rows must be a multiple of {PER_SNAPSHOT * VERSIONS}")
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    return Options(rows, databases, args.postgres_url)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    print(f"dashboard pages: median of {REPEATS} requests after a warm-up, in process")
    for kind in opts.databases:
        bench_database(kind, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
