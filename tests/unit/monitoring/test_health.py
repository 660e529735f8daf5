"""Health checks on value sequences, on a real torch fit through the engine's callbacks and on a real booster."""

from __future__ import annotations

import math

import pytest

from trainpipe.monitoring.health import HealthConfig, HealthMonitor


def feed(monitor: HealthMonitor, epochs: list[dict], speeds: list[float] | None = None) -> list[tuple[str, int]]:
    found = []
    for epoch, values in enumerate(epochs):
        rows = speeds[epoch] if speeds else None
        found += [(e.check, e.epoch) for e in monitor.observe(epoch, values, rows)]
    return found


def test_a_loss_that_stops_improving_warns_once_and_again_only_after_it_improved():
    losses = [1.0, 0.8, 0.7, 0.7, 0.6999, 0.7, 0.7, 0.7, 0.5, 0.5, 0.5, 0.5]
    monitor = HealthMonitor(HealthConfig(stall_epochs=3, stall_tolerance=1e-3))
    assert feed(monitor, [{"train_loss": v} for v in losses]) == [("loss_stall", 5), ("loss_stall", 11)]
    assert ("train_loss improved by only 0.014% in 3 epochs, less than 0.10%: from 0.7 at epoch 3 to its best 0.6999 "
            "at epoch 5 (now 0.7)") in monitor.events[0].message
    assert "train_loss has not improved by more than 0.10% in 3 epochs (best 0.5 at epoch 9, now 0.5)" in \
        monitor.events[1].message


def test_a_stall_message_never_calls_best_a_value_that_now_beats():
    """The README tour's run: the loss crept from 0.55817 down to 0.55768 in 5 rounds, less than 0.1%; the warning
    said "best 0.55817 ..., now 0.55768" although now was lower (better) than that "best"."""
    history = [0.6, 0.58, 0.56, 0.55817, 0.55805, 0.55797, 0.55786, 0.55775, 0.55768]
    monitor = HealthMonitor(HealthConfig(), monitor="validation_log_loss", loss="train_log_loss", unit="round")
    for round_, value in enumerate(history, start=32):  # 0-based rounds; messages count from 1
        monitor.observe(round_, {"validation_log_loss": value})
    (stall,) = monitor.events
    assert stall.message == ("validation_log_loss improved by only 0.088% in 5 rounds, less than 0.10%: from 0.55817 "
                             "at round 36 to its best 0.55768 at round 41 (now 0.55768)")
    assert stall.values["best"] == 0.55768 <= stall.values["validation_log_loss"] < stall.values["reference"]


def test_non_finite_values_are_an_error_reported_when_they_start():
    monitor = HealthMonitor(HealthConfig())
    epochs = [{"train_loss": 0.5}, {"train_loss": math.nan}, {"train_loss": math.nan}, {"train_loss": 0.4},
              {"train_loss": math.inf}]
    assert feed(monitor, epochs) == [("non_finite", 1), ("non_finite", 4)]
    assert monitor.events[0].severity == "error" and monitor.events[0].message == "train_loss is nan at epoch 2"


def test_a_gradient_norm_far_above_the_runs_median_warns():
    monitor = HealthMonitor(HealthConfig(gradient_factor=10, min_history=3))
    norms = [1.0, 1.2, 0.9, 50.0, 0.9, 1.1]  # the 1st-3rd build the history; 50 is 50× the median
    assert feed(monitor, [{"train_grad_norm": v} for v in norms]) == [("gradient_explosion", 3)]
    assert monitor.events[0].values == {"grad_norm": 50.0, "median": 1.0}


def test_throughput_below_half_the_runs_median_warns():
    monitor = HealthMonitor(HealthConfig(throughput_drop=0.5, min_history=3))
    speeds = [1000.0, 1100.0, 900.0, 1000.0, 400.0, 380.0, 1000.0, 300.0]
    assert feed(monitor, [{}] * len(speeds), speeds) == [("throughput_drop", 4), ("throughput_drop", 7)]
    assert monitor.events[0].message == "throughput 400 rows/s at epoch 5 is 40% of the run's median 1,000"


def test_a_validation_metric_worse_than_its_best_warns_in_either_direction():
    auc = HealthMonitor(HealthConfig(validation_tolerance=0.05), monitor="validation_roc_auc", mode="max")
    assert feed(auc, [{"validation_roc_auc": v} for v in [0.80, 0.90, 0.88, 0.84, 0.83, 0.91]]) == \
        [("validation_regression", 3)]
    loss = HealthMonitor(HealthConfig(validation_tolerance=0.05), monitor="validation_loss")
    assert feed(loss, [{"validation_loss": v} for v in [0.5, 0.4, 0.41, 0.43]]) == [("validation_regression", 3)]


def test_resource_samples_warn_on_an_idle_gpu_and_on_memory_near_its_limit():
    monitor = HealthMonitor(HealthConfig(gpu_util_min=30, resource_window=3, memory_max_percent=90))
    found = []
    for util, memory in [(95, 50), (10, 50), (12, 60), (8, 93), (9, 95), (80, 40)]:
        found += monitor.observe_resources({"gpu_0_utilization_percentage": util,
                                            "system_memory_usage_percentage": memory, "cpu_utilization_percentage": 5})
    assert [e.check for e in found] == ["gpu_underused", "memory_high"]  # both at the 4th sample, once each
    assert found[0].message.startswith("GPU 0 was 10% busy over the last 3 samples: training is waiting for input")
    assert found[1].message == "system memory 93% used (health.memory_max_percent 90)"


def test_state_dict_resumes_the_checks_where_they_were():
    values = [{"train_loss": v, "train_grad_norm": g} for v, g in [(1.0, 1), (0.9, 1), (0.9, 1), (0.9, 1), (0.9, 30),
                                                                     (0.9, 1), (0.9, 1)]]
    straight = HealthMonitor(HealthConfig(stall_epochs=3))
    expected = feed(straight, values)
    first = HealthMonitor(HealthConfig(stall_epochs=3))
    feed(first, values[:4])
    resumed = HealthMonitor(HealthConfig(stall_epochs=3))
    resumed.load_state_dict(first.state_dict())
    later = [(e.check, e.epoch) for i, v in enumerate(values[4:], start=4) for e in resumed.observe(i, v)]
    assert [(e.check, e.epoch) for e in resumed.events] == expected and later
    assert expected == [("loss_stall", 4), ("gradient_explosion", 4)]


def test_disabled_health_checks_report_nothing():
    monitor = HealthMonitor(HealthConfig(enabled=False))
    assert feed(monitor, [{"train_loss": math.nan}]) == [] and monitor.observe_resources(
        {"system_memory_usage_percentage": 99}) == []


def test_a_health_event_becomes_a_deduplicable_alert():
    monitor = HealthMonitor(HealthConfig())
    (event,) = monitor.observe(0, {"train_loss": math.nan})
    alert = event.as_event("run-1")
    assert alert.kind == "health" and alert.severity == "error" and alert.identity == "health:run-1:non_finite"
    assert alert.summary == "run run-1: train_loss is nan at epoch 1" and alert.details["epoch"] == 0


def test_a_diverging_torch_fit_raises_health_events_through_the_engine_callbacks():
    import torch as torch
    from trainpipe.engine.batches import TensorBatches
    from trainpipe.engine.config import EngineParams
    from trainpipe.engine.callbacks import EpochValues
    from trainpipe.engine.loop import Trainer

    generator = torch.Generator().manual_seed(0)
    X = torch.randn(300, 4, generator=generator)
    y = (X[:, 0] + X[:, 1] > 0).float()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))

    def bce(out, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), target)

    seen = []
    monitor = HealthMonitor(HealthConfig(stall_epochs=3), on_event=seen.append)
    callback = EpochValues(monitor.observe, may_stop=False)
    trainer = Trainer(net, bce, lambda out, target: {}, seed=3, threads=1, callbacks=[callback],
                      params=EngineParams(epochs=6, batch_size=32, lr=10.0, optimizer="sgd"))  # far too high a rate
    trainer.fit(TensorBatches(X[:240], y[:240]), TensorBatches(X[240:], y[240:]))
    assert {e.check for e in seen} == {"gradient_explosion", "validation_regression", "loss_stall"}
    assert seen == monitor.events


def test_a_booster_reports_per_round_into_the_same_checks():
    import xgboost  # noqa: F401
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from trainpipe.models import ModelConfig, build_family

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    model = build_family(ModelConfig(type="xgboost", params={"n_estimators": 120, "learning_rate": 0.5,
                                                             "max_depth": 6}), "binary", 2, 0, 1)
    monitor = HealthMonitor(HealthConfig(), monitor="validation_log_loss", loss="train_log_loss", unit="round")
    model.fit(X_train, y_train, X_val, y_val, train_metrics=True,
              report=lambda round_, values: bool(monitor.observe(round_, values)) and False)
    (stall,) = monitor.events  # the training loss converges to ~0.005 and stops moving
    assert stall.check == "loss_stall" and " rounds" in stall.message and stall.epoch > 20
    assert stall.values["best"] <= min(stall.values["train_log_loss"], stall.values["reference"])
