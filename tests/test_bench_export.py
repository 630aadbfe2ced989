"""Smoke run of bench/exporting.py --quick on SQLite: it fills, exports every format, checks the
row counts itself and prints one figure line per run. No timing assertions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "exporting.py"
LINE = r"^  sqlite +{rows} rows  {fmt} +[\d,]+ rows/s +[\d.]+ s  peak RSS +[\d.]+ MB  file .*MB$"


def test_quick_run_prints_a_figure_line_per_format_and_size() -> None:
    """Two sizes x three formats on SQLite, each exporting exactly the rows generated."""
    argv = [sys.executable, str(SCRIPT), "--quick", "--database", "sqlite"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rows in ("2,000", "4,000"):
        for fmt in ("csv", "jsonl", "parquet"):
            assert re.search(LINE.format(rows=rows, fmt=fmt), proc.stdout, re.M), proc.stdout
