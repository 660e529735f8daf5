"""Hyperparameter tuning with Optuna (the `tune` stage and `trainpipe tune`); docs/tuning.md.

space.py (search spaces), config.py (the `tuning` section), objective.py (one trial), study.py (storage,
sampler, pruner), budget.py (what ends a study), worker.py (worker processes), tracking.py (MLflow),
plots.py, retrain.py (how train uses the result).
"""
