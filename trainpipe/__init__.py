import os

__version__ = "0.1.0"

# Process-wide defaults, set before any library that reads them is imported; a value the user set wins.

# MLflow 3 sends usage telemetry to its maintainers' servers from every process that imports it (a config fetch
# from config.mlflow-telemetry.io, then usage records), unless MLFLOW_DISABLE_TELEMETRY or DO_NOT_TRACK is set.
# trainpipe uses MLflow as a local store on the user's behalf, so it does not let it call out unasked; it also
# saves ~0.1 s of CPU per run. Opt back in with MLFLOW_DISABLE_TELEMETRY=false (docs/operations.md).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# GNU OpenMP (libgomp: torch, xgboost, lightgbm and scikit-learn each load it) lets a thread that waits at a
# barrier spin 300,000 pause instructions, ~15 ms on CPUs whose pause takes ~140 cycles, before it sleeps. With
# other work on the machine, training's threads then spin while the thread they wait for is off the CPU. Measured
# on 2 cores beside one other busy process: xgboost 60 rounds 18-20 s instead of 1.4 s, a torch MLP epoch 12-47 s
# instead of 0.25 s; with 20,000 spins (~1 ms) 1.4 s and 0.24-0.32 s, and no slower on an idle machine
# (docs/operations.md). libgomp reads it when it loads; an OMP_WAIT_POLICY the user chose is left to decide.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")
