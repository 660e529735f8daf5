"""MLflow's system metrics sampled into a real SQLite MLflow store, for a run id given explicitly."""

from __future__ import annotations

import time

import pytest

from trainpipe.monitoring.health import HealthConfig, HealthMonitor
from trainpipe.monitoring.system_metrics import start_system_metrics


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("system-metrics", artifact_location=str(folder / "artifacts"))
    return uri, client, experiment


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", raising=False)
    monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", raising=False)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def busy_until(done, limit_s: float = 30.0) -> None:
    """Keep a core busy until `done()` (or the limit): the samples are counted, not assumed from the clock."""
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline:
        busy(0.2)


def history(client, run_id: str, key: str) -> list:
    return sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)


def test_samples_land_under_system_in_the_run_and_reach_the_hook(mlflow_store):
    uri, client, experiment = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    samples = []
    sampler = start_system_metrics(run_id, uri, interval_s=0.2, on_sample=samples.append)
    assert sampler is not None and sampler.running
    busy_until(lambda: len(samples) >= 3)  # a loaded machine may take longer than 3 intervals
    sampler.stop()
    sampler.stop()  # idempotent
    assert not sampler.running
    cpu = history(client, run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 3 and [m.step for m in cpu] == list(range(len(cpu)))
    keys = set(client.get_run(run_id).data.metrics)
    assert {"system/system_memory_usage_megabytes", "system/system_memory_usage_percentage"} <= keys
    assert len(samples) == len(cpu) and "cpu_utilization_percentage" in samples[0]  # the hook sees unprefixed names
    assert max(m.value for m in cpu) > 0


def test_a_second_sampler_on_the_same_run_continues_the_steps(mlflow_store):
    uri, client, experiment = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    for _ in range(2):  # e.g. tune, then train, in two processes logging to one run
        samples: list = []
        sampler = start_system_metrics(run_id, uri, interval_s=0.2, on_sample=samples.append)
        busy_until(lambda: len(samples) >= 2)
        sampler.stop()
    steps = [m.step for m in history(client, run_id, "system/cpu_utilization_percentage")]
    assert steps == list(range(len(steps))) and len(steps) >= 4


def test_the_sampler_stops_by_itself_when_the_run_ends(mlflow_store):
    uri, client, experiment = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    sampler = start_system_metrics(run_id, uri, interval_s=0.2)
    client.set_terminated(run_id, "FINISHED")
    deadline = time.monotonic() + 5
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sampler.running
    sampler.stop()


def test_health_checks_read_the_samples_as_they_are_taken(mlflow_store):
    uri, client, experiment = mlflow_store
    run_id = client.create_run(experiment).info.run_id
    health = HealthMonitor(HealthConfig(memory_max_percent=0.1))  # any memory use is "too much": it must fire
    sampler = start_system_metrics(run_id, uri, interval_s=0.2, on_sample=health.observe_resources)
    busy(1.0)
    sampler.stop()
    assert [e.check for e in health.events] == ["memory_high"]
    assert health.events[0].message.startswith("system memory")


def test_a_run_the_store_does_not_know_ends_the_sampler_quietly(mlflow_store):
    uri, _, _ = mlflow_store
    sampler = start_system_metrics("0" * 32, uri, interval_s=0.2)
    deadline = time.monotonic() + 5
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sampler.running
    sampler.stop()
