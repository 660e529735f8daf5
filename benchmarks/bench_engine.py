"""PyTorch engine benchmark: trainpipe's loop against the loops it replaces, measured in one run.

Why: the engine must not cost speed for its checkpoints, health checks and schedules, and its CPU fast path
must buy its speed without losing quality. On N rows × 32 float features, MLP [256,128,64], dropout 0.1, Adam
(fused, as trainpipe builds it), batch 512, one epoch, 2 threads, it measures, alternating methods within each
repeat (repeat r uses seed r for every method: same initial weights and, for the loops that shuffle the way
trainpipe does, the same row order), the median epoch time of:

- minimal: a hand-written loop (seeded randperm + index_select, torch's nn.Dropout, Adam fused=True: trainpipe's
  flags);
  minimal_plain_adam: the same with unfused Adam, to show the fused-Adam lever;
- trainpipe: the Trainer with torch's dropout (`fast_dropout: false`, the default until 2026-12-01);
  trainpipe_bf16 (amp: bf16), trainpipe_fast (fast_dropout: true: today's default path), trainpipe_fast_bf16
  (both: the CPU fast path, docs/operations.md); the levers are measured from `trainpipe`;
- trainpipe_tracked: the default path (fast dropout) with a checkpoint written and the epoch's history logged to
  MLflow (SQLite) inside the timed epoch; the time spent in each, as a share of that epoch, is reported;
- seed_style: a Dataset returning one row per `__getitem__` under a seeded DataLoader;
- lightning: Lightning's Trainer over a TensorDataset DataLoader, when `lightning` is importable. It is not a
  dependency: `make bench-deps` installs it into .venv with `pip --no-deps` (torch stays untouched); without it
  the output says `lightning: not installed`.

Every timed region is the same work: the training epoch plus a forward pass and loss over the validation rows;
the AUC is computed after the clock stops. Ratios are against `minimal` from the same run: of the median rates,
and the median of the ratios within each repeat (this machine's speed moves within a run). The levers (fused
Adam, bf16, fast dropout) are reported each on its own and as its share of the combined speed-up.

Quality: the timed epoch's AUC moves by ±0.01 with the dropout stream alone (measured: the same loop with another
generator state), far above the 0.002 target, so quality is judged separately: minimal, minimal with another
dropout stream (the noise floor), trainpipe_fast and trainpipe_fast_bf16 train `--quality-epochs` epochs for each
of `--quality-seeds` seeds; the gap is the mean paired AUC difference against minimal.

Targets (issue 16): the default path (trainpipe_fast) ≥ 1.0× minimal, as is trainpipe with torch's dropout; fast path ≥ 2× minimal with |AUC gap| ≤ 0.002; checkpoint ≤ 3%,
MLflow ≤ 2% of the epoch. Usage: .venv/bin/python benchmarks/bench_engine.py [--quick] [--rows 300000]
[--repeats 3] [--threads 2] [--scaling 100000,1000000,4000000]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.callbacks import EpochValues
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.loop import Trainer
from trainpipe.engine.precision import bf16_is_native
from trainpipe.models.tabular import TorchMLPParams, build_module

RESULTS = Path(__file__).resolve().parent / "results" / "bench_engine.json"
HIDDEN, BATCH, SEED, DROPOUT = [256, 128, 64], 512, 0, 0.1
THREADS = 2  # --threads
DEFAULT_PATH = "trainpipe_fast"  # what `model.params` defaults train with: fast_dropout true, amp none
# The hand-written baselines' network: torch's nn.Dropout, as a user's own loop has it (fast_dropout is
# trainpipe's default, so it is switched off explicitly here)
BASELINE_PARAMS = TorchMLPParams(hidden_dims=HIDDEN, dropout=DROPOUT, fast_dropout=False)


def make_data(rows: int):
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(rows, 32)).astype(np.float32)
    logit = X[:, 0] * X[:, 1] + np.sin(X[:, 2] * 2) + 0.5 * X[:, 3] - 0.3 * X[:, 4] ** 2 + 0.2 * X[:, 5:10].sum(1)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    n_val = rows // 10
    return (torch.from_numpy(X[n_val:]), torch.from_numpy(y[n_val:])), (torch.from_numpy(X[:n_val]), y[:n_val])


def mlp(params: TorchMLPParams, seed: int):
    torch.manual_seed(seed)
    return build_module(32, [], [], params, 1)


def bce(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1).float(), y)


def forward(module, X) -> torch.Tensor:
    """Eval-mode outputs in blocks of 65,536 rows, as trainpipe's evaluate and predict run them (one forward over
    every validation row would hold a 256-wide activation of them all: 1.4× the 4M-row matrix)."""
    module.eval()
    with torch.no_grad():
        return torch.cat([module(block, torch.zeros((len(block), 0), dtype=torch.int64)).float()
                          for block in X.split(65536)])


def validate(module, X_val, y_val) -> None:
    """The validation forward pass and loss every timed region ends with (trainpipe's fit does the same)."""
    bce(forward(module, X_val), torch.from_numpy(y_val))


def order(rows: int, seed: int, epoch: int) -> torch.Tensor:
    """trainpipe's row order for (seed, epoch) (TensorBatches.permutation), so the loops see the same batches."""
    return torch.randperm(rows, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class TimedStore(CheckpointStore):
    """A CheckpointStore that adds up the seconds its writes take (checkpoint share inside the epoch)."""

    seconds = 0.0

    def save(self, state, step, best_step):
        started = time.perf_counter()
        try:
            return super().save(state, step, best_step)
        finally:
            self.seconds += time.perf_counter() - started


class MLflowEpochs:
    """Logs each epoch's history values to a real MLflow store (SQLite), timing the calls."""

    def __init__(self, folder: Path) -> None:
        from trainpipe.store import Store
        from trainpipe.tracking.config import TrackingConfig
        from trainpipe.tracking.tracker import Tracker

        self.tracker = Tracker(Store(folder), TrackingConfig())
        self.run_id = self.tracker.start_run("bench", "bench", {})
        self.seconds = 0.0

    def __call__(self, epoch: int, values: dict[str, float]) -> None:
        started = time.perf_counter()
        self.tracker.log_history(self.run_id, {k: [v] for k, v in values.items()}, first_step=epoch)
        self.seconds += time.perf_counter() - started


def run_trainpipe(train, val, seed, epochs=1, amp="none", fast_dropout=False, tracked_in: Path | None = None):
    params = TorchMLPParams(epochs=epochs, batch_size=BATCH, hidden_dims=HIDDEN, dropout=DROPOUT, optimizer="adam",
                            amp=amp, fast_dropout=fast_dropout)
    module = mlp(params, seed)
    store, mlflow = None, None
    if tracked_in is not None:
        store = TimedStore(Path(tempfile.mkdtemp(dir=tracked_in)), "bench")
        mlflow = MLflowEpochs(tracked_in / "store")
    trainer = Trainer(module, bce, lambda o, y: {}, params, seed=seed, threads=THREADS, store=store,
                      callbacks=[EpochValues(mlflow, may_stop=False)] if mlflow else None)
    no_cat = torch.zeros((len(train[0]), 0), dtype=torch.int64)
    val_batches = TensorBatches(val[0], torch.zeros((len(val[0]), 0), dtype=torch.int64), torch.from_numpy(val[1]))
    started = time.perf_counter()
    trainer.fit(TensorBatches(train[0], no_cat, train[1]), val_batches)
    seconds = time.perf_counter() - started
    extra = {"checkpoint_seconds": store.seconds, "mlflow_seconds": mlflow.seconds} if store and mlflow else {}
    return seconds, scores_auc(module, val), extra


def scores_auc(module, val) -> float:
    return float(roc_auc_score(val[1], forward(module, val[0]).squeeze(1).numpy()))


def train_step(module, opt, X, cat, y) -> None:
    """One step of the hand-written baselines: forward, loss, backward, optimizer."""
    loss = bce(module(X, cat), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def run_minimal(train, val, seed, epochs=1, fused=True, stream_offset=0):
    """The hand-written loop. stream_offset ≠ 0 reseeds the default generator after the weights are built: the
    same run with other dropout masks only (the quality noise floor)."""
    torch.set_num_threads(THREADS)
    module = mlp(BASELINE_PARAMS, seed)
    if stream_offset:
        torch.manual_seed(seed + stream_offset)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=fused)
    X, y = train
    no_cat = torch.zeros((BATCH, 0), dtype=torch.int64)
    started = time.perf_counter()
    for epoch in range(epochs):
        module.train()
        perm = order(len(X), seed, epoch)
        for start in range(0, len(X), BATCH):
            idx = perm[start:start + BATCH]
            train_step(module, opt, X.index_select(0, idx), no_cat[:len(idx)], y.index_select(0, idx))
        validate(module, *val)
    seconds = time.perf_counter() - started
    return seconds, scores_auc(module, val), {}


class RowDataset(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def run_seed_style(train, val, seed):
    torch.set_num_threads(THREADS)
    module = mlp(BASELINE_PARAMS, seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)
    loader = torch.utils.data.DataLoader(RowDataset(*train), batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    started = time.perf_counter()
    module.train()
    for xb, yb in loader:
        train_step(module, opt, xb, torch.zeros((len(xb), 0), dtype=torch.int64), yb)
    validate(module, *val)
    seconds = time.perf_counter() - started
    return seconds, scores_auc(module, val), {}


def run_lightning(train, val, seed):
    """Lightning's Trainer over a TensorDataset DataLoader, same model, fused Adam and seeded shuffle."""
    import lightning as L

    torch.set_num_threads(THREADS)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(BASELINE_PARAMS, seed)

        def training_step(self, batch, _):
            xb, yb = batch
            return bce(self.net(xb, torch.zeros((len(xb), 0), dtype=torch.int64)), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3, fused=True)

    module = Module()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*train), batch_size=BATCH, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    started = time.perf_counter()
    trainer.fit(module, loader)
    validate(module.net, *val)
    seconds = time.perf_counter() - started
    return seconds, scores_auc(module.net, val), {}


def lightning_status() -> str:
    """'ok', or why Lightning is left out (the output says so instead of failing)."""
    try:
        import lightning  # noqa: F401
    except Exception as exc:  # not installed, or installed against another torch
        return "not installed (make bench-deps)" if isinstance(exc, ModuleNotFoundError) else f"not importable: {exc}"
    return "ok"


def _status_bytes(field: str) -> int:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def one_size(rows: int) -> dict:
    """In a fresh process: the default path's epoch throughput and peak RSS above the RSS after a warm-up run.

    The peak is Linux's VmHWM, reset (writing 5 to /proc/self/clear_refs) once the data exists, so it
    counts the resident matrix plus what training adds, not the imports or the generator's temporaries.
    """
    torch.set_num_threads(THREADS)
    small_train, small_val = make_data(10_000)
    run_trainpipe(small_train, small_val, SEED, fast_dropout=True)  # the default path
    del small_train, small_val
    baseline = _status_bytes("VmRSS")
    train, val = make_data(rows)
    raw = train[0].numel() * 4 + val[0].numel() * 4
    Path("/proc/self/clear_refs").write_text("5")
    seconds, _, _ = run_trainpipe(train, val, SEED, fast_dropout=True)
    peak = _status_bytes("VmHWM") - baseline
    return {"rows": rows, "rows_per_s": len(train[0]) / seconds, "raw_bytes": raw, "peak_over_baseline_bytes": peak,
            "peak_vs_raw": peak / raw}


def timed_methods(train, val, folder: Path, lightning: bool) -> dict:
    # the targets' methods right after the minimal loop: the closer in time, the likelier the same machine phase
    methods = {
        "minimal": lambda s: run_minimal(train, val, s),
        "trainpipe_fast_bf16": lambda s: run_trainpipe(train, val, s, amp="bf16", fast_dropout=True),
        "trainpipe_fast": lambda s: run_trainpipe(train, val, s, fast_dropout=True),
        "trainpipe": lambda s: run_trainpipe(train, val, s),
        "minimal_plain_adam": lambda s: run_minimal(train, val, s, fused=False),
        "trainpipe_bf16": lambda s: run_trainpipe(train, val, s, amp="bf16"),
        "trainpipe_tracked": lambda s: run_trainpipe(train, val, s, fast_dropout=True, tracked_in=folder),
        "seed_style": lambda s: run_seed_style(train, val, s),
    }
    if lightning:
        methods["lightning"] = lambda s: run_lightning(train, val, s)
    return methods


def levers(rate: dict[str, float]) -> dict:
    """Each lever's speed-up on its own, and the steps from minimal_plain_adam to the fast path as shares of
    that whole speed-up (log scale, so the shares add up to 1)."""
    single = {"fused_adam": rate["minimal"] / rate["minimal_plain_adam"],
              "bf16_autocast": rate["trainpipe_bf16"] / rate["trainpipe"],
              "fast_dropout": rate["trainpipe_fast"] / rate["trainpipe"],
              "fast_dropout_and_bf16": rate["trainpipe_fast_bf16"] / rate["trainpipe"]}
    steps = {"fused_adam": single["fused_adam"], "trainpipe_loop": rate["trainpipe"] / rate["minimal"],
             "fast_dropout": single["fast_dropout"], "bf16_on_fast_dropout": rate["trainpipe_fast_bf16"] /
             rate["trainpipe_fast"]}
    total = math.log(rate["trainpipe_fast_bf16"] / rate["minimal_plain_adam"])
    shares = {k: math.log(v) / total for k, v in steps.items()} if abs(total) > 1e-9 else {}
    return {"speedup": single, "fast_path_vs_minimal_plain_adam": math.exp(total), "steps": steps,
            "share_of_log_speedup": shares}


def quality(train, val, epochs: int, seeds: int) -> dict:
    """Mean AUC after `epochs` epochs over `seeds` seeds, paired gaps against minimal, and the noise floor."""
    variants = {"minimal": lambda s: run_minimal(train, val, s, epochs=epochs),
                "minimal_other_dropout_stream": lambda s: run_minimal(train, val, s, epochs=epochs, stream_offset=7919),
                "trainpipe_fast": lambda s: run_trainpipe(train, val, s, epochs=epochs, fast_dropout=True),
                "trainpipe_fast_bf16": lambda s: run_trainpipe(train, val, s, epochs=epochs, amp="bf16",
                                                               fast_dropout=True)}
    aucs: dict[str, list[float]] = {name: [] for name in variants}
    for seed in range(SEED, SEED + seeds):
        for name, fn in variants.items():
            aucs[name].append(fn(seed)[1])
    gaps = {name: [a - m for a, m in zip(values, aucs["minimal"])] for name, values in aucs.items() if name != "minimal"}
    return {"epochs": epochs, "seeds": seeds, "auc": aucs, "mean_auc": {k: statistics.fmean(v) for k, v in aucs.items()},
            "mean_gap_vs_minimal": {k: statistics.fmean(v) for k, v in gaps.items()},
            "gap_stdev": {k: statistics.stdev(v) if len(v) > 1 else None for k, v in gaps.items()}}


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality-epochs", type=int, default=4)
    parser.add_argument("--quality-seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="30k rows, 2 repeats, small quality check: does it run?")
    parser.add_argument("--scaling", default="", help="Comma-separated row counts, e.g. 100000,1000000,4000000: "
                        "throughput and peak memory per size, each in a fresh process (slow; off by default).")
    parser.add_argument("--no-lightning", action="store_true", help="Leave Lightning out even when installed.")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    THREADS = args.threads
    if args.one_size:
        print(json.dumps(one_size(args.one_size)))
        return
    if args.quick:
        args.rows, args.repeats, args.quality_epochs, args.quality_seeds = 30_000, 2, 2, 2
    torch.set_num_threads(THREADS)
    train, val = make_data(args.rows)
    small_train, small_val = make_data(10_000)
    status = "left out (--no-lightning)" if args.no_lightning else lightning_status()
    if status == "ok":
        import logging
        import warnings

        logging.getLogger("lightning").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="lightning")  # its own deprecation notices, once per fit
    # without native bf16 the engine trains amp: bf16 in float32 (engine/precision.py): the *_bf16 methods then
    # measure float32, and the file says so
    out: dict = {"default_path": DEFAULT_PATH, "rows": args.rows, "threads": THREADS, "torch": torch.__version__, "repeats": args.repeats,
                 "quick": args.quick, "lightning": status, "bf16_native": bf16_is_native()}
    times: dict[str, list[float]] = {}
    aucs: dict[str, list[float]] = {}
    extras: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        # warm-up: the first optimizer imports torch._dynamo (~1 s); oneDNN builds kernels on first use of a shape
        for fn in timed_methods(small_train, small_val, Path(folder), status == "ok").values():
            fn(SEED)
        methods = timed_methods(train, val, Path(folder), status == "ok")
        for repeat in range(args.repeats):  # alternating: a stall of this shared machine hits every method alike
            for name, fn in methods.items():
                seconds, auc_value, extra = fn(SEED + repeat)
                times.setdefault(name, []).append(seconds)
                aucs.setdefault(name, []).append(auc_value)
                extras.setdefault(name, []).append(extra)
    rate = {name: len(train[0]) / statistics.median(values) for name, values in times.items()}
    out["seconds"] = times
    out["rows_per_s"] = rate
    out["auc_timed_epoch"] = aucs
    minimal = rate["minimal"]
    tracked = extras["trainpipe_tracked"]
    ratios = {f"{name}_vs_minimal": value / minimal for name, value in rate.items() if name != "minimal"}
    ratios["default_path_vs_minimal"] = rate[DEFAULT_PATH] / minimal
    ratios["trainpipe_vs_seed_style"] = rate["trainpipe"] / rate["seed_style"]
    if "lightning" in rate:
        ratios["trainpipe_vs_lightning"] = rate["trainpipe"] / rate["lightning"]
        ratios["trainpipe_fast_bf16_vs_lightning"] = rate["trainpipe_fast_bf16"] / rate["lightning"]
    ratios["checkpoint_share_of_epoch"] = statistics.median(
        e["checkpoint_seconds"] / s for e, s in zip(tracked, times["trainpipe_tracked"]))
    ratios["mlflow_share_of_epoch"] = statistics.median(
        e["mlflow_seconds"] / s for e, s in zip(tracked, times["trainpipe_tracked"]))
    ratios["auc_gap_timed_epoch_trainpipe"] = statistics.fmean(
        a - m for a, m in zip(aucs["trainpipe"], aucs["minimal"]))
    out["ratios"] = ratios
    # the same ratios taken within each repeat, then the median: this machine's speed moves by ~30% within a run
    # (the minimal loop 1.06-1.45 s in one), and a median of each method's times can pair two different phases
    out["paired_vs_minimal"] = {name: statistics.median(m / t for m, t in zip(times["minimal"], values))
                                for name, values in times.items() if name != "minimal"}
    out["levers"] = levers(rate)
    out["quality"] = quality(train, val, args.quality_epochs, args.quality_seeds)
    if args.scaling:
        import subprocess
        import sys

        out["scaling"] = [json.loads(subprocess.run([sys.executable, __file__, "--one-size", size, "--threads",
                                                     str(THREADS)], check=True, capture_output=True, text=True).stdout)
                          for size in args.scaling.split(",")]
    print(summary(out))
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2))
        print(f"written: {RESULTS}")


def summary(out: dict) -> str:
    r, q = out["ratios"], out["quality"]
    lines = [f"{out['rows']:,} rows, {out['threads']} threads, median of {out['repeats']} alternating repeats",
             *([] if out.get("bf16_native", True) else
               ["  this CPU has no native bf16 (avx512_bf16 or AMX): the *_bf16 methods trained in float32"]),
             *(f"  {name:22s} {rate:10,.0f} rows/s  {rate / out['rows_per_s']['minimal']:.2f}× minimal"
               for name, rate in out["rows_per_s"].items()),
             f"  default path ({out['default_path']}: fast_dropout is the default) "
             f"{r['default_path_vs_minimal']:.2f}× minimal; torch's dropout (trainpipe) {r['trainpipe_vs_minimal']:.2f}×",
             "  per-repeat ratios' medians (same repeat, each against that repeat's minimal): " + ", ".join(
                 f"{k} {out['paired_vs_minimal'][k]:.2f}×" for k in ("trainpipe", "trainpipe_fast", "trainpipe_fast_bf16")),
             f"  lightning: {out['lightning']}" + (f"; trainpipe {r['trainpipe_vs_lightning']:.2f}× lightning, fast "
                                                   f"path {r['trainpipe_fast_bf16_vs_lightning']:.2f}×"
                                                   if "trainpipe_vs_lightning" in r else ""),
             f"  checkpoint share of the epoch {r['checkpoint_share_of_epoch']:.2%}, MLflow "
             f"{r['mlflow_share_of_epoch']:.2%} (inside the timed epoch)",
             "levers, each alone: " + ", ".join(f"{k} {v:.2f}×" for k, v in out["levers"]["speedup"].items()),
             f"from minimal_plain_adam to the fast path ({out['levers']['fast_path_vs_minimal_plain_adam']:.2f}×), "
             "step by step with its share of that speed-up (log scale):",
             *(f"  {k:24s} {v:.2f}×  {out['levers']['share_of_log_speedup'].get(k, float('nan')):+.0%}"
               for k, v in out["levers"]["steps"].items()),
             f"quality: AUC after {q['epochs']} epochs, mean of {q['seeds']} seeds; paired gap vs minimal (± stdev)",
             *(f"  {k:30s} {q['mean_auc'][k]:.4f}  gap {v:+.4f} ± {q['gap_stdev'][k] or 0:.4f}"
               for k, v in q["mean_gap_vs_minimal"].items()),
             f"  minimal                        {q['mean_auc']['minimal']:.4f}"]
    for size in out.get("scaling", []):
        lines.append(f"scaling {size['rows']:>9,} rows: {size['rows_per_s']:,.0f} rows/s, peak {size['peak_vs_raw']:.2f}× "
                     "the raw matrix")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
