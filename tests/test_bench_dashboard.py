"""Smoke run of bench/dashboard_pages.py --quick on SQLite: it fills a small archive, serves
the dashboard and prints one figure line per page (the script itself exits non-zero when a
page does not answer 200). No timing assertions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "dashboard_pages.py"
PAGES = ("accounts", "story", "deliveries", r"story export \(csv\)")


def test_quick_run_prints_a_figure_line_per_page() -> None:
    argv = [sys.executable, str(SCRIPT), "--quick", "--database", "sqlite"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3,200 rows, 20 stories" in proc.stdout
    for page in PAGES:
        line = rf"^  sqlite +{page} +[\d.]+ ms +[\d.]+ KiB$"
        assert re.search(line, proc.stdout, re.M), proc.stdout
