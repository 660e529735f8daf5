import os

__version__ = "0.1.0"

# MLflow 3 sends usage telemetry to its maintainers' servers from every process that imports it (a config fetch
# from config.mlflow-telemetry.io, then usage records), unless MLFLOW_DISABLE_TELEMETRY or DO_NOT_TRACK is set.
# trainpipe uses MLflow as a local store on the user's behalf, so it does not let it call out unasked (it also
# saves ~0.1 s of CPU per run: records built per MLflow call). Opt back in with MLFLOW_DISABLE_TELEMETRY=false
# (docs/operations.md).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
