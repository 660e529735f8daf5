"""OpenMP's barrier spin: trainpipe's GOMP_SPINCOUNT default against libgomp's own, idle and beside other work.

Why: torch, xgboost, lightgbm and scikit-learn run on GNU OpenMP, whose waiting threads spin ~300,000 pause
instructions before they sleep. trainpipe/__init__.py sets GOMP_SPINCOUNT=20000 unless the user chose a spin count
or wait policy. This script shows what that costs on an idle machine and what it saves when another process
keeps a core busy (the contended case: one CPU-bound process per core but one, at nice 10, as a second job).

Each workload runs in a fresh interpreter (libgomp reads the variable when it loads), the two settings
alternating, median of R repeats:
- xgboost: hist, 60 rounds, depth 6, on 300k x 32 generated rows, training.threads = all cores;
- torch: one epoch of an MLP [256, 128, 64] with fused Adam, batch 512, on 100k x 32 rows, all cores.

    .venv/bin/python benchmarks/bench_openmp_spin.py [--repeats R] [--no-contended] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "bench_openmp_spin.json"
TRAINPIPE_SPINCOUNT = "20000"  # trainpipe/__init__.py's default

XGBOOST = """
import sys, time, numpy as np, xgboost as xgb
rows, threads = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0); X = rng.normal(size=(rows, 32)).astype(np.float32)
y = (X[:, 0] + rng.normal(size=rows) > 0).astype(np.int32)
d = xgb.DMatrix(X, label=y, nthread=threads)
start = time.perf_counter()
xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.3, "tree_method": "hist", "nthread": threads}, d, 60)
print(time.perf_counter() - start)
"""

TORCH = """
import sys, time, torch
rows, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads); torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
                          torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.Adam(net.parameters(), fused=True)
X = torch.randn(rows, 32); y = (X[:, 0] > 0).float()
start = time.perf_counter()
for i in range(0, rows, 512):
    opt.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(net(X[i:i + 512]).squeeze(1), y[i:i + 512]).backward()
    opt.step()
print(time.perf_counter() - start)
"""

BUSY = "import os; os.nice(10)\nwhile True: pass"


def env_for(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if setting == "trainpipe":
        env["GOMP_SPINCOUNT"] = TRAINPIPE_SPINCOUNT
    return env


def timed(code: str, rows: int, threads: int, setting: str, limit: float) -> float:
    """Seconds of the timed region; `limit` if the child runs past it (libgomp's spin can take minutes)."""
    try:
        done = subprocess.run([sys.executable, "-c", code, str(rows), str(threads)], env=env_for(setting),
                              capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return limit
    return float(done.stdout.strip().splitlines()[-1])


def measure(name: str, code: str, rows: int, threads: int, repeats: int, limit: float) -> dict:
    seconds: dict[str, list[float]] = {"default": [], "trainpipe": []}
    for _ in range(repeats):
        for setting in seconds:
            seconds[setting].append(round(timed(code, rows, threads, setting, limit), 3))
    median = {k: statistics.median(v) for k, v in seconds.items()}
    return {"rows": rows, "threads": threads, "seconds": seconds, "median": median,
            "trainpipe_speedup": round(median["default"] / median["trainpipe"], 3)}


def run_all(args: argparse.Namespace, threads: int) -> dict:
    work = {"xgboost": (XGBOOST, args.xgb_rows), "torch": (TORCH, args.torch_rows)}
    return {name: measure(name, code, rows, threads, args.repeats, args.limit) for name, (code, rows) in work.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xgb-rows", type=int, default=300_000)
    parser.add_argument("--torch-rows", type=int, default=100_000)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds a child may run (counted as this)")
    parser.add_argument("--no-contended", action="store_true", help="only the idle case")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat, no results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.xgb_rows, args.torch_rows = 1, 20_000, 10_000
    threads = os.cpu_count() or 1
    out: dict = {"cpu_count": threads, "trainpipe_spincount": TRAINPIPE_SPINCOUNT,
                 "load_average_start": os.getloadavg()[0], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out["idle"] = run_all(args, threads)
    if not args.no_contended:
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(max(1, threads - 1))]
        try:
            time.sleep(1.0)
            out["contended"] = run_all(args, threads)
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    out["load_average_end"] = os.getloadavg()[0]
    for case in ("idle", "contended"):
        for name, r in out.get(case, {}).items():
            print(f"{case:9} {name:8} libgomp default {r['median']['default']:7.2f}s  trainpipe "
                  f"(GOMP_SPINCOUNT={TRAINPIPE_SPINCOUNT}) {r['median']['trainpipe']:7.2f}s  "
                  f"-> {r['trainpipe_speedup']:.2f}x  (all: {r['seconds']})")
    if not args.quick:
        args.out.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
