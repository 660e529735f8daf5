"""The objective's pieces: which value is reported, when, and how budgets end a study."""

import optuna
import pytest

from trainpipe.tuning.budget import Budget, describe
from trainpipe.tuning.objective import decision_steps, pick_intermediate
from trainpipe.tuning.tracking import trial_record

PRUNER = {"type": "hyperband", "min_resource": 1, "reduction_factor": 3, "n_startup_trials": 5, "n_warmup_steps": 0,
          "interval_steps": 1}


def test_the_metric_itself_is_reported_when_the_family_has_it_else_a_signed_loss():
    assert pick_intermediate({"validation_rmse": 1.0}, "rmse", "minimize") == ("validation_rmse", 1.0)
    assert pick_intermediate({"validation_log_loss": 0.3}, "roc_auc", "maximize") == ("validation_log_loss", -1.0)
    assert pick_intermediate({"validation_log_loss": 0.3}, "log_loss", "minimize") == ("validation_log_loss", 1.0)
    # a booster asked for eval_metric auc reports the tuned metric itself, under evaluate's name
    assert pick_intermediate({"validation_roc_auc": 0.9}, "roc_auc", "maximize") == ("validation_roc_auc", 1.0)
    assert pick_intermediate({"validation_loss": 0.3, "train_loss": 0.2}, "f1_macro", "maximize") == ("validation_loss", -1.0)
    assert pick_intermediate({"train_loss": 0.2}, "roc_auc", "maximize") is None


def test_reports_go_only_to_the_steps_where_the_pruner_decides():
    assert decision_steps(PRUNER, 100) == [0, 1, 3, 9, 27, 81]
    assert decision_steps({**PRUNER, "min_resource": 2, "reduction_factor": 2}, 40) == [0, 2, 4, 8, 16, 32]
    assert decision_steps({**PRUNER, "min_resource": 4}, 120) == [0, 4, 12, 36, 108]
    assert decision_steps({**PRUNER, "type": "median", "n_warmup_steps": 5, "interval_steps": 10}, 40) == [5, 15, 25, 35]
    assert decision_steps({**PRUNER, "type": "none"}, 40) == []  # no pruner: only the last value is reported


def optimize(budget: Budget, objective, limit: int = 50):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=limit, callbacks=[budget.callback], catch=(ValueError,))
    return study


def costly(trial):
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("trainpipe", {"cost_usd": 0.3})
    return 1.0


def test_budget_stops_on_the_study_total_and_on_cost_and_says_which():
    budget = Budget(n_trials=3)
    study = optimize(budget, costly)
    assert len(study.trials) == 3 and budget.conclude(study) == "n_trials" and budget.remaining(study) == 0
    budget = Budget(n_trials=50, max_cost=1.0)
    study = optimize(budget, costly)
    assert len(study.trials) == 4 and budget.conclude(study) == "max_cost"  # 4 × $0.30 ≥ $1

    class T:
        n_trials, timeout, max_cost = 10, None, 1.0
    assert describe("max_cost", T, 1.2, 4) == "budget spent: tuning.max_cost $1 reached ($1.2000 spent); 4 trials finished"


def test_repeated_failures_end_the_study_with_the_last_error():
    from trainpipe.errors import ModelError

    def failing(trial):
        trial.set_user_attr("trainpipe", {"error": "bad combo"})
        raise ValueError("bad combo")

    budget = Budget(n_trials=50)
    study = optimize(budget, failing)
    assert len(study.trials) == 5
    with pytest.raises(ModelError, match="5 trials in a row failed; the last: bad combo"):
        budget.conclude(study)


def test_a_trial_becomes_params_metrics_steps_and_tags_for_mlflow():
    trial = optuna.create_trial(value=0.9, params={"depth": 3, "lr": 0.1},
                                distributions={"depth": optuna.distributions.IntDistribution(1, 5),
                                               "lr": optuna.distributions.FloatDistribution(0.01, 1)},
                                intermediate_values={0: -0.6, 3: -0.4},
                                user_attrs={"trainpipe": {"duration_s": 1.5, "cost_usd": 0.01,
                                                          "intermediate": "-validation_log_loss"}})
    params, metrics, steps, tags = trial_record(trial, ["validation_roc_auc"])
    assert params == {"depth": "3", "lr": "0.1"}
    assert metrics == {"validation_roc_auc": 0.9, "duration_s": 1.5, "cost_usd": 0.01}
    # the pruner saw the loss negated (roc_auc is maximised); MLflow gets the loss curve itself, as train logs it
    assert steps == {"history/validation_log_loss": [(0, 0.6), (3, 0.4)]}
    assert tags["optuna.state"] == "COMPLETE"


def test_trials_of_dead_local_workers_are_failed_and_retried_with_their_params(monkeypatch):
    import datetime
    import socket

    from trainpipe.tuning import study as studies

    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    dead = optuna.create_trial(state=optuna.trial.TrialState.RUNNING, params={"x": 0.5}, distributions=dist,
                               user_attrs={"worker": f"{socket.gethostname()}:999999"})
    early = optuna.create_trial(state=optuna.trial.TrialState.RUNNING)  # killed before the objective's first line
    other = optuna.create_trial(state=optuna.trial.TrialState.RUNNING, params={"x": 0.1}, distributions=dist,
                                user_attrs={"worker": "another-host:1"})
    for trial in (dead, early, other):
        study.add_trial(trial)
    monkeypatch.setattr(studies, "_alive", lambda pid: pid != 999999)
    assert studies.recover_dead_trials(study, grace_period=3600) == [0]  # the early one is still within grace
    states = [t.state.name for t in study.trials]
    assert states[:3] == ["FAIL", "RUNNING", "RUNNING"] and study.trials[3].state.name == "WAITING"
    assert study.trials[3].params == {"x": 0.5} and study.trials[3].system_attrs["failed_trial"] == 0
    later = datetime.datetime.now() + datetime.timedelta(seconds=31)
    assert studies.recover_dead_trials(study, grace_period=30, now=later) == [1]


def test_a_trial_records_its_wall_and_cpu_time_and_costs_them_with_the_shared_cost_code():
    import numpy as np

    from trainpipe.tuning.objective import ObjectiveSettings, TrialData, make_objective

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    settings = ObjectiveSettings(task="binary", family="sklearn", base_params={"max_iter": 50}, estimator=None,
                                 space={}, metric="roc_auc", direction="maximize", latency_objective=False, seed=0,
                                 threads=1, early_stopping_rounds=None, n_classes=2, categorical=None,
                                 pruner={**PRUNER, "type": "none"}, usd_per_hour=3.6)
    study = optuna.create_study(direction="maximize")
    study.optimize(make_objective(settings, TrialData(X[:300], y[:300], X[300:], y[300:])), n_trials=1)
    record = study.trials[0].user_attrs["trainpipe"]
    assert record["duration_s"] > 0 and record["cpu_s"] > 0
    # $3.60/h = $0.001/s, of the unrounded wall time (duration_s is rounded to 0.1 ms)
    assert record["cost_usd"] == pytest.approx(record["duration_s"] / 1000, abs=1e-7)


def test_waiting_for_other_workers_ends_when_their_running_trial_completes_or_its_worker_is_dead(monkeypatch):
    """A --join worker whose own trials were all pruned waits for the trial another worker still runs (it may
    complete: the study then has a best), and does not wait for a trial whose worker process is gone."""
    import socket
    import threading
    import time

    from trainpipe.tuning import study as studies

    study = optuna.create_study()
    pruned = optuna.create_trial(state=optuna.trial.TrialState.PRUNED)
    study.add_trial(pruned)
    running = study.ask()  # another live worker's trial
    finisher = threading.Timer(0.6, lambda: study.tell(running, 0.25))
    told: list[int] = []
    started = time.perf_counter()
    finisher.start()
    studies.wait_for_running(study, grace_period=30, poll_s=0.05, on_wait=told.append)
    assert time.perf_counter() - started >= 0.5 and told == [1]
    assert studies.best_trial(study, "minimize").value == 0.25

    monkeypatch.setattr(studies, "_alive", lambda pid: pid != 999999)
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.RUNNING,
                                        user_attrs={"worker": f"{socket.gethostname()}:999999"}))
    started = time.perf_counter()
    studies.wait_for_running(study, grace_period=30, poll_s=0.05)
    assert time.perf_counter() - started < 1 and study.trials[-2].state.name == "FAIL"
