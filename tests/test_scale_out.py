"""Scale-out proof (issue P4): two `archiver serve` and three `archiver worker` processes on
one PostgreSQL and one Redis, the simulator with 200 accounts and a live story each, and 5,000
signed story_insights deliveries sent round robin over both receivers while discovery, the
regular snapshots and the final captures run. Afterwards every 200 has its row, every delivery
was processed exactly once (one `webhook` version per story), no slot has two versions,
each subject's versions are exactly 1..n, and no story was missed: the burst waits in the
deliveries' own lane, which runs a quarter of each worker's slots (workers.main.lane_slots),
so the captures beside it keep their pace. With deliveries in the one arq queue beside the
captures, 33-173 of the 200 stories were missed here.

Where the time goes on the 2-core development machine, quiet: ~4 s to send (post_all's
hand-made keep-alive client; httpx took ~28 s here, competing with the workers for the CPU),
~20 s for the three workers to work off the backlog (~250 deliveries/s, bound by their own
Python CPU: ~5 ms per delivery for arq's bookkeeping, SQLAlchemy and psycopg), all hidden
under the wait for the stories, which expire 25-30 s after they are added; ~31 s in all,
~42 s with two CPU-bound processes beside it, ~61 s with six. With the deliveries' lane (2
slots a worker) and a load average of 5-10 from other processes: 62-93 s. The timeout bounds
it at 150 s.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.metasim_fixtures import running_metasim
from tests.processes import (
    acked_missing,
    add_stories,
    archiver_env,
    delivery_statuses,
    duplicate_slots,
    fleet,
    post_all,
    register_accounts,
    rows,
    scalar,
    story_deliveries,
    version_gaps,
)
from tests.servers import PrivateRedis, wait_until

pytestmark = pytest.mark.slow

ACCOUNTS = 200
DELIVERIES = int(os.environ.get("ARCHIVER_SCALE_DELIVERIES", "5000"))  # the figure
# Stories expire this long after the processes are up (plus up to SPREAD more): long
# enough for discovery behind the delivery backlog, a few regular slots and the final one.
EXPIRES_IN, SPREAD = 25.0, 5.0


def settled(engine: Engine, stories: int) -> bool:
    """Every delivery in a final state and every story closed (final captured or missed)."""
    pending = scalar(
        engine, "SELECT COUNT(*) FROM webhook_delivery WHERE status IN ('received', 'enqueued')"
    )
    closed = scalar(engine, "SELECT COUNT(*) FROM media WHERE capture_state <> 'live'")
    return bool(pending == 0 and closed == stories)


@pytest.mark.timeout(150)
def test_two_receivers_three_workers_lose_and_repeat_nothing(
    pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """Deliveries over 2 receivers, 3 workers, 200 live stories: each kept and done once."""
    with (
        PrivateRedis() as redis,
        running_metasim(minute_seconds=1.0) as sim,
        fleet(tmp_path, archiver_env(pg_url, redis.url, sim)) as procs,
    ):
        accounts = register_accounts(pg, sim.world, ACCOUNTS)
        urls = [procs.serve("serve-a"), procs.serve("serve-b")]
        for n in range(3):
            procs.worker(f"worker-{n}")
        procs.wait_serving()
        stories = add_stories(sim.world, accounts, expires_in=EXPIRES_IN, spread=SPREAD)
        deliveries = story_deliveries(sim.world, stories, DELIVERIES)
        started = time.monotonic()
        statuses = post_all(urls, deliveries, concurrency=8)
        sent_in = time.monotonic() - started
        wait_until(lambda: settled(pg, ACCOUNTS), timeout=EXPIRES_IN + SPREAD + 75, interval=0.5)
        settled_in = time.monotonic() - started
        assert procs.alive() == ["serve-a", "serve-b", "worker-0", "worker-1", "worker-2"]
    print(f"sent {DELIVERIES} in {sent_in:.1f} s, all settled after {settled_in:.1f} s")
    assert Counter(statuses) == {200: DELIVERIES}
    assert acked_missing(pg, [body for body, _ in deliveries]) == 0  # every 200 has its row
    assert delivery_statuses(pg) == {"processed": DELIVERIES}  # one row per body, all done
    webhook = rows(
        pg, "SELECT subject_id, COUNT(*) FROM snapshot WHERE slot = 'webhook' GROUP BY subject_id"
    )
    media_ids = {m for ids in stories.values() for m in ids}
    assert {subject for subject, _ in webhook} == media_ids
    assert {count for _, count in webhook} == {1}
    assert duplicate_slots(pg) == []
    assert version_gaps(pg) == []
    # The burst waits in the deliveries' own lane (a quarter of each worker's slots), so the
    # captures beside it keep their pace: every story's final lands before it expires.
    states = dict(rows(pg, "SELECT capture_state, COUNT(*) FROM media GROUP BY 1"))
    print(states, rows(pg, "SELECT slot, COUNT(*) FROM snapshot GROUP BY 1 ORDER BY 1"))
    assert states == {"final_captured": ACCOUNTS}
