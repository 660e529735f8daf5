"""CPU, memory, disk, network and GPU use of a run, sampled by MLflow's own system-metrics monitor.

    sampler = start_system_metrics(mlflow_run_id, tracking_uri, interval_s=10, on_sample=health.observe_resources)
    ... train / tune ...
    sampler.stop()   # flushes the last samples

MLflow's `SystemMetricsMonitor` samples psutil (and pynvml when an NVIDIA GPU and the `nvidia-ml-py` package
are there) in a daemon thread and logs `system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`,
`system/gpu_0_utilization_percentage`, ... to the run, batched. trainpipe adds only what MLflow lacks: starting it
for a run id given explicitly (a stage runs under a run it did not start with `mlflow.start_run`), resuming the
step count when a second stage or a resumed run logs to the same run, and a hook that hands each aggregated sample
to the health checks (idle GPU, memory near its limit) before it is logged.

The monitor stops by itself when the MLflow run is no longer RUNNING, and reads the run's status once per sample
(one small query; at the default 10 s interval the sampler costs well under 1% of a core: docs/monitoring.md).
`MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` and `MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING`, when set, override
the arguments (MLflow's rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class SystemMetricsConfig(BaseModel):
    """Config section `system_metrics`: CPU, memory and GPU use sampled while train and tune run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Sample CPU, memory, disk, network and (with nvidia-ml-py) GPU use "
                          "into the run's MLflow metrics `system/...` while train and tune run, and feed the "
                          "health checks gpu_underused and memory_high.")
    interval_s: float = Field(10.0, ge=0.1, le=3600, description="Seconds between samples (each costs ~10 ms of "
                              "CPU; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it).")

SampleHook = Callable[[Mapping[str, float]], Any]


class SystemMetricsSampler:
    """A running sampler; `stop()` ends it and writes what it still holds (idempotent)."""

    def __init__(self, monitor: Any):
        self._monitor = monitor

    @property
    def running(self) -> bool:
        thread = getattr(self._monitor, "_process", None)
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None


def _monitor_class() -> type:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class HookedMonitor(SystemMetricsMonitor):
        """MLflow's monitor, handing each aggregated sample to a hook before logging it."""

        def __init__(self, *args: Any, on_sample: SampleHook | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.on_sample = on_sample

        def publish_metrics(self, metrics: dict[str, float]) -> None:
            if self.on_sample is not None:
                try:
                    self.on_sample(dict(metrics))
                except Exception:
                    log.warning("system metrics: the sample hook failed", exc_info=True)
            super().publish_metrics(metrics)

    return HookedMonitor


def start_system_metrics(run_id: str, tracking_uri: str, *, interval_s: float = 10.0, samples_before_logging: int = 1,
                         node_id: str | None = None, on_sample: SampleHook | None = None) -> SystemMetricsSampler | None:
    """Start sampling for `run_id` (which must be RUNNING) in a daemon thread; None when it cannot start.

    samples_before_logging: samples averaged into one logged point. node_id: a name per machine for distributed
    runs (`system/<node_id>/...`). Steps continue after the run's last `system/` step.
    """
    try:
        monitor = _monitor_class()(run_id, sampling_interval=interval_s, samples_before_logging=samples_before_logging,
                                   resume_logging=True, node_id=node_id, tracking_uri=tracking_uri,
                                   on_sample=on_sample)
    except Exception as exc:  # noqa: BLE001 -- no psutil, an unreachable store: the run goes on unmonitored
        log.warning("system metrics: not sampled (%s)", exc)
        return None
    monitor.start()
    return SystemMetricsSampler(monitor)
