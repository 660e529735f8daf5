"""What train and tune share to watch a run while it fits (not a stage: no SPEC).

- the health checks (`health` section, monitoring/health.py) of every fit, handed to the family as
  `FitContext.watch`: the torch engine calls them after each epoch, the boosters after each round;
- `<run>/live.json`: the fit's latest epoch/round, its values and rows/s, rewritten at most once a second, so
  `trainpipe runs watch` shows progress from another terminal (boosters send their history to MLflow only at
  the end of the stage);
- MLflow's system-metrics sampler (`system_metrics` section) on the run's MLflow run while the stage works, its
  samples fed to the resource checks (memory near its limit, an idle GPU).

Each health event goes through `ctx.emit` (events.jsonl, MLflow, alerts) and, with progress on, to stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from trainpipe.engine.callbacks import IterationWatch, WatchFactory, WatchSpec
from trainpipe.files import write_text
from trainpipe.monitoring.health import HealthEvent, HealthMonitor
from trainpipe.stages.context import StageContext

LIVE_FILE = "live.json"
LIVE_EVERY_S = 1.0  # live.json rewrites at most this often: a boosting round costs a clock read, not a file


class LiveFile:
    """The fit in progress in `<run>/live.json` (stage, epoch/round, values, rows/s, time), throttled."""

    def __init__(self, ctx: StageContext, stage: str, unit: str):
        self.path, self.stage, self.unit = ctx.run_dir / LIVE_FILE, stage, unit
        self._last = 0.0

    def record(self, iteration: int, values: Mapping[str, float], rows_per_s: float | None) -> None:
        now = time.time()
        if now - self._last < LIVE_EVERY_S:
            return
        self._last = now
        doc = {"stage": self.stage, "unit": self.unit, "iteration": iteration + 1, "time": now,
               "rows_per_s": rows_per_s, "values": {k: (v if math.isfinite(v) else str(v)) for k, v in
                                                    ((k, float(v)) for k, v in values.items())}}
        write_text(self.path, json.dumps(doc))


class FitWatch:
    """One fit's watcher: the health checks, then the live file."""

    def __init__(self, health: HealthMonitor, live: LiveFile):
        self.health, self.live = health, live

    def observe(self, epoch: int, values: Mapping[str, float], rows_per_s: float | None = None) -> object:
        found = self.health.observe(epoch, values, rows_per_s)
        self.live.record(epoch, values, rows_per_s)
        return found


class StageWatch:
    """A stage's health checks, live file and resource sampling; see the module docstring."""

    def __init__(self, ctx: StageContext, stage: str):
        self.ctx, self.stage = ctx, stage
        self.config = ctx.config.health
        self.resources = HealthMonitor(self.config, on_event=self.health_event)  # fed by the sampler thread
        self._say = threading.Lock()

    def health_event(self, event: HealthEvent) -> None:
        self.ctx.emit(event.as_event(self.ctx.run_id))
        if self.ctx.progress:
            with self._say:  # rich's live bars redirect stderr: the line lands above the bar
                sys.stderr.write(f"health {event.severity}: {event.message}\n")
                sys.stderr.flush()

    def fit_watch(self) -> WatchFactory:
        """FitContext.watch: a fresh watcher per fit, told by the family what it monitors."""

        def make(spec: WatchSpec) -> IterationWatch:
            health = HealthMonitor(self.config, monitor=spec.monitor, mode=spec.mode, loss=spec.loss,
                                   grad_norm=spec.grad_norm, on_event=self.health_event, unit=spec.unit)
            return FitWatch(health, LiveFile(self.ctx, self.stage, spec.unit))

        return make

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """MLflow's system metrics on the run while the block runs (off: `system_metrics.enabled: false`, or no
        MLflow run)."""
        settings = self.ctx.config.system_metrics
        stop: Any = None
        if settings.enabled and self.ctx.tracking is not None:
            stop = self.ctx.tracking.sample_system(settings.interval_s, self.resources.observe_resources)
        try:
            yield
        finally:
            if stop is not None:
                stop()
