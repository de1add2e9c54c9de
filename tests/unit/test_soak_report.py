"""bench/soak.py's steady-state figure: the fleet phase after its first catch-up compaction (a compact run
that committed groups), against the same table without the fleet ("after")."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _soak() -> Any:
    spec = importlib.util.spec_from_file_location("soak_bench", ROOT / "bench" / "soak.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_steady_state_leaves_out_the_catch_up_and_compares_with_the_no_fleet_phase(tmp_path: Path) -> None:
    soak = _soak()
    load = soak.Load()
    t0 = 1000.0
    for i in range(100):
        load.samples.append(soak.Sample(t0 + i, 1.0, "baseline", True))
        # the catch-up compaction runs from t0+200 to t0+230: queries finishing before it ends are slow
        load.samples.append(soak.Sample(t0 + 200.5 + i, 3.0 if i < 30 else 0.105, "fleet", True))
        load.samples.append(soak.Sample(t0 + 400 + i, 0.1, "after", True))
    jobs = [{"job": "compact", "start": t0 + 200, "end": t0 + 230, "status": "done", "bytes": 10,
             "counts": {"groups_committed": 8}},
            {"job": "compact", "start": t0 + 250, "end": t0 + 251, "status": "nothing-to-do", "bytes": 0,
             "counts": {}},
            {"job": "expire", "start": t0 + 205, "end": t0 + 206, "status": "done", "bytes": 0, "counts": {}}]
    args = argparse.Namespace(bytes_per_second=1000, share=0.3, phase_minutes=1.0, no_nice=False)
    stats = soak.report(load, jobs, args, tmp_path, t0)
    assert stats["catch_up_seconds"] == 30
    assert stats["steady"]["queries"] == 70                      # started after the catch-up committed
    assert round(stats["p95_steady_pct"], 6) == 5.0              # 0.105 s vs 0.100 s
    assert stats["steady_pass"] and stats["p95_interference_pct"] > 100
    text = (tmp_path / "report.md").read_text()
    assert "Steady state (the fleet phase after its first catch-up compaction, which ended 30 s into it" in text
    assert "| fleet, steady state (after the catch-up) | 70 |" in text
