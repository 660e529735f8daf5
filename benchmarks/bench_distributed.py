"""Issue 12 in one run: torch DDP scaling (1 vs 2 torchrun processes), XGBoost on a Dask LocalCluster against
one process at 1M rows, and a table larger than the memory it may use, trained to completion.

Each part lives in its own module next to this script (distributed_torch.py, distributed_dask.py,
larger_than_memory.py) with a `measure(quick) -> dict` that times its baseline in the same call; this script runs
them one after another, prints each part's figures and writes benchmarks/results/bench_distributed.json.
On this 2-core machine a second process or Dask worker has at most one more core to use, so speed-ups are
bounded near 2x (less: the pipeline's other threads, gloo's all-reduce, Dask's scheduler share the cores); the
figures say what they measured and where.

Usage: .venv/bin/python benchmarks/bench_distributed.py [--quick] [--parts torch,dask,memory]
(--quick writes nothing; --parts writes those parts into the results file and keeps the other parts' last figures)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_distributed.json"
PARTS = {"torch": "distributed_torch", "dask": "distributed_dask", "memory": "larger_than_memory"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that every part runs")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts, comma-separated: " + ", ".join(PARTS))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "load_before": os.getloadavg()}, "quick": args.quick, "parts": {}}
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        module = importlib.import_module(PARTS[part])
        started = time.perf_counter()
        print(f"== {part} ({PARTS[part]}.py)", flush=True)
        figures = module.measure(args.quick)
        figures["bench_seconds"] = round(time.perf_counter() - started, 1)
        results["parts"][part] = figures
        print(json.dumps(figures, indent=2, default=str), flush=True)
    results["machine"]["load_after"] = os.getloadavg()
    results["parts_run"] = list(results["parts"])  # "machine" describes the run of these parts
    if not args.quick:
        # a run of some parts keeps the others' last figures (each part's own "machine"/load fields say when)
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        kept = {k: v for k, v in previous.get("parts", {}).items() if k not in results["parts"]}
        results["parts"] = {name: ({**kept, **results["parts"]})[name] for name in PARTS
                            if name in kept or name in results["parts"]}
        RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
