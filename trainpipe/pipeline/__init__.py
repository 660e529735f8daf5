"""Running stages: the stage table (stages.py), runs and their folders (run.py, run_folder.py), cache keys and
reuse (cache.py), one run's MLflow calls (tracking.py), `trainpipe validate` (checks.py) and
`trainpipe runs list|compare` (runs.py)."""
