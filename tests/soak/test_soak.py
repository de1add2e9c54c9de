"""The 24-hour soak of the brief: excluded by default (`-m 'not soak'` in pyproject); run it by hand:

    .venv/bin/python -m pytest tests/soak -m soak -s          # 3 × 8-hour phases
    SOAK_PHASE_MINUTES=480 ...                                 # the phase length, in minutes
    SOAK_OUT=bench/out/soak-24h ...                            # where the report and plots go

It runs bench/soak.py (baseline, fleet, after) at the production rates — a writer every 30 s, 50 analyst
queries a minute — and fails when the p95 or p99 latency with the fleet exceeds the baseline's by 10 %,
or when the steady-state p95 (the fleet phase after its first catch-up compaction, against the same table
without the fleet) exceeds the no-fleet phase's by 10 %.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.soak


@pytest.mark.timeout(0)   # not the suite's 300 s default: the run below carries its own deadline
def test_24_hour_soak_keeps_analyst_latency_within_ten_percent(tmp_path: Path) -> None:
    minutes = os.environ.get("SOAK_PHASE_MINUTES", "480")
    out = Path(os.environ.get("SOAK_OUT", str(tmp_path / "soak")))   # keep the report: SOAK_OUT=docs/soak/...
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--phase-minutes", minutes, "--writer-interval", "30",
         "--queries-per-minute", "50", "--share", "0.30", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=float(minutes) * 60 * 3 + 3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["baseline"]["failed"] == stats["fleet"]["failed"] == 0
    assert stats["p95_change_pct"] < 10, stats
    assert stats["p99_change_pct"] < 10, stats
    assert stats["steady"]["queries"] > 0 and stats["p95_steady_pct"] < 10, stats
