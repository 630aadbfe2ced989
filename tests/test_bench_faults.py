"""The fault benchmark's arithmetic (bench/capture_faults.py): calls made during a block and
the time from a fault clearing to each account's next success, from a call log."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def faults() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("capture_faults")
    finally:
        sys.path.remove(str(BENCH))


def _calls(faults: ModuleType, rows: list[tuple[float, str, int]]) -> list[object]:
    return [faults.CallRecord(at, account, status, None) for at, account, status in rows]


def test_calls_beyond_each_accounts_first_refusal_are_wasted(faults: ModuleType) -> None:
    """An account refused twice during its block wasted one call; one refused once, none."""
    window = faults.Window("t", 10.0, 20.0, frozenset({"a", "b"}), True)
    calls = _calls(faults, [(11, "a", 400), (12, "a", 400), (13, "b", 400), (14, "c", 400)])
    assert faults.wasted_calls(window, calls) == 1


def test_an_app_block_counts_every_refusal_after_the_first(faults: ModuleType) -> None:
    """For the whole app, only the very first refusal is free."""
    window = faults.Window("app", 10.0, 20.0, None, True)
    calls = _calls(faults, [(11, "a", 400), (12, "b", 400), (25, "c", 200)])
    assert faults.wasted_calls(window, calls) == 1


def test_recovery_is_measured_from_the_last_refusal_when_the_block_ran_long(
    faults: ModuleType,
) -> None:
    """A block extended past its plan clears at its last refusal; gaps run from there."""
    window = faults.Window("t", 10.0, 20.0, frozenset({"a", "b"}), True)
    rows: list[tuple[float, str, int]] = [
        (11, "a", 400),
        (22, "a", 400),
        (23, "a", 200),
        (27, "b", 200),
        (12, "b", 400),
    ]
    gaps = sorted(faults.recovery_gaps(window, _calls(faults, rows)))
    assert gaps == [pytest.approx(1.0), pytest.approx(5.0)]


def test_accounts_the_fault_never_answered_are_not_counted(faults: ModuleType) -> None:
    """Only accounts that got an error answer during the fault have a recovery gap."""
    window = faults.Window("5xx", 10.0, 20.0)
    calls = _calls(faults, [(12, "a", 500), (15, "b", 200), (21, "a", 200), (40, "b", 200)])
    assert faults.recovery_gaps(window, calls) == [pytest.approx(1.0)]


def test_a_throttle_clears_no_sooner_than_the_wait_meta_asked_for(faults: ModuleType) -> None:
    """A client must not call before Meta's regain estimate has passed since the first
    refusal (that would extend the block); recovery is measured from then."""
    window = faults.Window("app", 10.0, 15.0, None, True, 15.0, 25.0)
    calls = _calls(faults, [(11, "a", 400), (37, "a", 200)])
    assert faults.cleared(window, calls) == pytest.approx(36.0)
    assert faults.recovery_gaps(window, calls) == [pytest.approx(1.0)]
