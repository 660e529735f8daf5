"""Hyperparameter tuning with Optuna (the `tune` stage and `trainpipe tune`); docs/tuning.md.

space.py (search spaces), config.py (the `tuning` section), checks.py (what is checked before any data is
read), objective.py (one trial), study.py (storage, sampler, pruner), schedule.py (the pruner's default
schedule, start-up trials), budget.py (what ends a study), worker.py (worker processes), tracking.py (MLflow),
plots.py, progress.py. How train uses the result (the hand-over) is the train stage's: trainpipe/stages/train.py.
"""
