"""Peak RSS of the spill and of the merge of a bounded sort, separately (rows only: no parquet writers).

    .venv/bin/python bench/spill_phases.py /tmp/n2000/manifest.json             # jemalloc's default decay
    .venv/bin/python bench/spill_phases.py /tmp/n2000/manifest.json --decay-ms 0

Takes the manifest.json of a `bench/compaction.py --data narrow --workdir ...` data set, sorts it on
(sensor_kind, payload_id) under --budget-mb through lifecycle.compaction.ordered (spill_runs, merge_runs),
and prints each phase's peak VmRSS (polled every 50 ms) and the number of runs. Run it with
ARROW_DEFAULT_MEMORY_POOL=jemalloc, as the compaction pods are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) >> 10
    return 0


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lifecycle.compaction import ordered
    from lifecycle.compaction.bounded import prefetched
    from lifecycle.compaction.keys import sort_keys
    from lifecycle.compaction.planner import FileInfo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--budget-mb", type=int, default=1024)
    ap.add_argument("--decay-ms", type=int, default=None, help="pa.jemalloc_set_decay_ms before the sort")
    args = ap.parse_args()
    if args.decay_ms is not None:
        pa.jemalloc_set_decay_ms(args.decay_ms)
    m = json.loads(Path(args.manifest).read_text())
    phase, peaks = ["start"], {}

    def poll() -> None:
        while True:
            peaks[phase[0]] = max(peaks.get(phase[0], 0), _rss_mib())
            time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()
    scratch = Path(tempfile.mkdtemp(prefix="lc-phases-"))
    memory = ordered.Memory(args.budget_mb << 20, scratch)
    inputs = [FileInfo(p, s, r) for p, s, r in zip(m["inputs"], m["sizes"], m["records"], strict=True)]
    keys = lambda t: sort_keys(t, ("sensor_kind", "payload_id"), ("asc", "asc"), ("last", "last"))  # noqa: E731
    text = ["mission_id", "unit", "status"]
    row_bytes = 115.0   # narrow rows, decoded
    try:
        with ThreadPoolExecutor(2) as pool:
            stream = prefetched(lambda ins, lo, hi: iter([pq.read_table(ins[0].path.removeprefix("file://"))]),
                                inputs, pool, 2, memory.chunk_bytes)
            started = time.monotonic()
            phase[0] = "spill"
            runs = ordered.spill_runs(stream, keys, memory, None, pool, memory.expected_runs(row_bytes * m["rows"]),
                                      text)
            phase[0] = "merge"
            merged = ordered.merge_runs(runs, keys, ("sensor_kind", "payload_id"), memory, row_bytes, pool, text)
            rows = sum(b.num_rows for b in merged)
            phase[0] = "end"
            time.sleep(0.2)
        print(json.dumps({"runs": len(runs), "rows": rows, "seconds": round(time.monotonic() - started, 1),
                          "peak_rss_mib": {k: v for k, v in peaks.items() if k in ("spill", "merge")}}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
