"""Training health: checks run after every epoch (torch) or boosting round, and on resource samples.

    health = HealthMonitor(config.health, monitor="validation_loss", mode="min", on_event=alert_and_log)
    ...after each epoch/round:  health.observe(epoch, values, rows_per_s)   # values: {"train_loss": ..., ...}
    ...from system metrics:     health.observe_resources(sample)            # {"gpu_0_utilization_percentage": ...}

Each check compares the run with itself (its own best loss, its own median gradient norm and throughput), so
no absolute threshold has to fit every model. A problem is reported when it starts and again only after it
cleared (a loss that stays NaN for 30 epochs is one event, not 30). Events are typed (`HealthEvent`), kept in
`events`, handed to `on_event` (live display, the run folder, alerts) and become alerts with `as_event`.
State for resume: `state_dict()` / `load_state_dict()`.

| check                 | severity | fires when                                                                   |
|-----------------------|----------|------------------------------------------------------------------------------|
| non_finite            | error    | a reported value (loss, metric, gradient norm) is NaN or infinite             |
| loss_stall            | warning  | the training loss has not improved by stall_tolerance (relative) in stall_epochs |
| gradient_explosion    | warning  | the gradient norm exceeds gradient_factor × the run's median so far          |
| throughput_drop       | warning  | rows/s fall below throughput_drop × the run's median so far                  |
| validation_regression | warning  | the monitored validation metric is worse than its best by validation_tolerance |
| gpu_underused         | warning  | a GPU's mean utilisation over resource_window samples is below gpu_util_min  |
| memory_high           | warning  | system or GPU memory use reaches memory_max_percent                          |
"""

from __future__ import annotations

import math
import re
import statistics
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from trainpipe.monitoring.events import Event, Severity

Check = Literal["non_finite", "loss_stall", "gradient_explosion", "throughput_drop", "validation_regression",
                "gpu_underused", "memory_high"]
_GPU_UTIL = re.compile(r"^gpu_(\d+)_utilization_percentage$")
_MEMORY = re.compile(r"^(system_memory_usage_percentage|gpu_\d+_memory_usage_percentage)$")


class HealthConfig(BaseModel):
    """Config section `health`: training health checks (each compares the run with itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the checks after every epoch/boosting round and on resource samples.")
    stall_epochs: int = Field(5, ge=2, description="loss_stall: epochs/rounds without improvement before it warns.")
    stall_tolerance: float = Field(1e-3, ge=0, description="loss_stall: a relative improvement smaller than this "
                                   "does not count (1e-3: 0.1%).")
    gradient_factor: float = Field(10.0, gt=1, description="gradient_explosion: warn when the gradient norm exceeds "
                                   "this multiple of the run's median so far.")
    throughput_drop: float = Field(0.5, gt=0, lt=1, description="throughput_drop: warn when rows/s fall below this "
                                   "share of the run's median so far.")
    validation_tolerance: float = Field(0.05, ge=0, description="validation_regression: warn when the monitored "
                                        "metric is this much (relative) worse than its best.")
    min_history: int = Field(3, ge=1, description="Epochs/rounds before the checks against the run's median speak.")
    gpu_util_min: float = Field(30.0, ge=0, le=100, description="gpu_underused: mean GPU utilisation (%) under "
                                "which a GPU counts as waiting for input.")
    memory_max_percent: float = Field(90.0, gt=0, le=100, description="memory_high: system or GPU memory use (%) "
                                      "that warns.")
    resource_window: int = Field(6, ge=1, description="gpu_underused: resource samples averaged (MLflow samples "
                                 "every 10 s by default: one minute).")


@dataclass(frozen=True)
class HealthEvent:
    check: Check
    severity: Severity
    message: str  # one line
    epoch: int | None = None  # 0-based epoch or boosting round; None for resource events
    values: dict[str, float] = field(default_factory=dict)

    def as_event(self, run_id: str) -> Event:
        """The alert for this event; one per run and check within the alert dedup window."""
        return Event("health", self.severity, f"run {run_id}: {self.message}", run_id, key=f"{run_id}:{self.check}",
                     details={"check": self.check, "epoch": self.epoch, **self.values})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _worse(value: float, best: float, mode: str, tolerance: float) -> bool:
    """value is worse than best by more than `tolerance` of |best|."""
    margin = tolerance * max(abs(best), 1e-12)
    return value > best + margin if mode == "min" else value < best - margin


class HealthMonitor:
    """Runs every check on each epoch's values; see the module docstring.

    monitor/mode: the validation value early stopping watches and its direction. loss: the training loss (for
    the boosters, e.g. `train_log_loss` when they record it; otherwise the stall check watches `monitor`).
    grad_norm: the gradient norm's key. unit: "round" for the boosters (messages say "at round 12").
    """

    def __init__(self, config: HealthConfig, monitor: str = "validation_loss", mode: Literal["min", "max"] = "min",
                 loss: str = "train_loss", grad_norm: str = "train_grad_norm",
                 on_event: Callable[[HealthEvent], None] | None = None, unit: Literal["epoch", "round"] = "epoch"):
        self.config, self.monitor, self.mode, self.loss, self.grad_norm = config, monitor, mode, loss, grad_norm
        self.unit = unit  # how messages count: torch epochs or boosting rounds
        self.on_event = on_event
        self.events: list[HealthEvent] = []
        self._lock = threading.Lock()  # resource samples arrive from MLflow's sampling thread
        self._active: set[str] = set()  # problems reported and not cleared yet
        self._best_loss: tuple[float, int] | None = None  # the stall's reference: the last improvement > tolerance
        self._lowest: tuple[float, int] | None = None  # the best loss seen (improvements of any size)
        self._best_monitor: tuple[float, int] | None = None
        self._norms: list[float] = []
        self._speeds: list[float] = []
        self._gpu: dict[str, deque[float]] = {}

    # --- per epoch / round ----------------------------------------------------------------------------------

    def observe(self, epoch: int, values: Mapping[str, float], rows_per_s: float | None = None) -> list[HealthEvent]:
        if not self.config.enabled:
            return []
        found: list[HealthEvent] = []
        bad = {k: float(v) for k, v in values.items() if not math.isfinite(float(v))}
        for key, value in bad.items():
            self._raise(found, f"non_finite:{key}", HealthEvent("non_finite", "error", f"{key} is {value} at {self.unit} "
                                                                f"{epoch + 1}", epoch, {key: value}))
        for key in [k for k in self._active if k.startswith("non_finite:")]:
            if key.split(":", 1)[1] in values and key.split(":", 1)[1] not in bad:
                self._active.discard(key)
        loss_key = self.loss if self.loss in values else self.monitor
        if loss_key in values and loss_key not in bad:
            self._stall(found, epoch, loss_key, float(values[loss_key]))
        if self.grad_norm in values and self.grad_norm not in bad:
            self._against_median(found, epoch, "gradient_explosion", self._norms, float(values[self.grad_norm]))
        if rows_per_s is not None and math.isfinite(rows_per_s):
            self._against_median(found, epoch, "throughput_drop", self._speeds, float(rows_per_s))
        if self.monitor in values and self.monitor not in bad:
            self._regression(found, epoch, float(values[self.monitor]))
        return found

    def _stall(self, found: list[HealthEvent], epoch: int, key: str, value: float) -> None:
        """The stall is counted from the last improvement larger than the tolerance (`_best_loss`, the reference);
        smaller improvements since then move `_lowest`, the best value seen, which the message shows as such: the
        reference is not the best value once the loss has crept below it."""
        mode = "min" if key == self.loss else self.mode
        c = self.config
        if self._lowest is None or _worse(self._lowest[0], value, mode, 0.0):
            self._lowest = (value, epoch)
        if self._best_loss is None or _worse(self._best_loss[0], value, mode, c.stall_tolerance):
            self._best_loss = (value, epoch)  # improved by more than the tolerance
            self._active.discard("loss_stall")
            return
        reference, at = self._best_loss
        best, best_at = self._lowest
        if epoch - at >= c.stall_epochs:
            if _worse(reference, best, mode, 0.0):  # crept below the reference, by less than the tolerance
                gain = abs(reference - best) / max(abs(reference), 1e-12)
                message = (f"{key} improved by only {gain:.3%} in {epoch - at} {self.unit}s, less than "
                           f"{c.stall_tolerance:.2%}: from {reference:.5g} at {self.unit} {at + 1} to its best "
                           f"{best:.5g} at {self.unit} {best_at + 1} (now {value:.5g})")
            else:
                message = (f"{key} has not improved by more than {c.stall_tolerance:.2%} in {epoch - at} {self.unit}s "
                           f"(best {best:.5g} at {self.unit} {best_at + 1}, now {value:.5g})")
            self._raise(found, "loss_stall", HealthEvent("loss_stall", "warning", message, epoch, {
                key: value, "best": best, "best_epoch": best_at, "reference": reference, "reference_epoch": at}))

    def _against_median(self, found: list[HealthEvent], epoch: int, check: Check, history: list[float],
                        value: float) -> None:
        c = self.config
        if len(history) >= c.min_history:
            median = statistics.median(history)
            if check == "gradient_explosion" and value > c.gradient_factor * median:
                self._raise(found, check, HealthEvent(check, "warning", f"gradient norm {value:.4g} at {self.unit} {epoch + 1} "
                            f"is {value / median:.1f}× the run's median {median:.4g}", epoch,
                            {"grad_norm": value, "median": median}))
            elif check == "throughput_drop" and value < c.throughput_drop * median:
                self._raise(found, check, HealthEvent(check, "warning", f"throughput {value:,.0f} rows/s at {self.unit} "
                            f"{epoch + 1} is {value / median:.0%} of the run's median {median:,.0f}", epoch,
                            {"rows_per_s": value, "median": median}))
            else:
                self._active.discard(check)
        history.append(value)

    def _regression(self, found: list[HealthEvent], epoch: int, value: float) -> None:
        if self._best_monitor is None or _worse(self._best_monitor[0], value, self.mode, 0.0):
            self._best_monitor = (value, epoch)
            self._active.discard("validation_regression")
            return
        best, at = self._best_monitor
        if _worse(value, best, self.mode, self.config.validation_tolerance):
            gap = abs(value - best) / max(abs(best), 1e-12)
            self._raise(found, "validation_regression", HealthEvent(
                "validation_regression", "warning", f"{self.monitor} {value:.5g} at {self.unit} {epoch + 1} is {gap:.1%} "
                f"worse than its best {best:.5g} ({self.unit} {at + 1})", epoch, {self.monitor: value, "best": best,
                                                                           "best_epoch": at}))
        else:
            self._active.discard("validation_regression")

    # --- resource samples -----------------------------------------------------------------------------------

    def observe_resources(self, sample: Mapping[str, float]) -> list[HealthEvent]:
        """One aggregated sample of MLflow's system metrics (names without the `system/` prefix)."""
        if not self.config.enabled:
            return []
        c, found = self.config, cast("list[HealthEvent]", [])
        with self._lock:
            for key, value in sample.items():
                gpu = _GPU_UTIL.match(key)
                if gpu:
                    window = self._gpu.setdefault(gpu.group(1), deque(maxlen=c.resource_window))
                    window.append(float(value))
                    mean = sum(window) / len(window)
                    if len(window) == c.resource_window and mean < c.gpu_util_min:
                        self._raise(found, f"gpu_underused:{gpu.group(1)}", HealthEvent(
                            "gpu_underused", "warning", f"GPU {gpu.group(1)} was {mean:.0f}% busy over the last "
                            f"{len(window)} samples: training is waiting for input (more loader workers, a larger "
                            "batch, or data already on the device)", None, {key: mean}))
                    elif mean >= c.gpu_util_min:
                        self._active.discard(f"gpu_underused:{gpu.group(1)}")
                elif _MEMORY.match(key):
                    if value >= c.memory_max_percent:
                        what = "system memory" if key.startswith("system") else f"GPU {key.split('_')[1]} memory"
                        self._raise(found, f"memory_high:{key}", HealthEvent(
                            "memory_high", "warning", f"{what} {value:.0f}% used (health.memory_max_percent "
                            f"{c.memory_max_percent:g})", None, {key: float(value)}))
                    else:
                        self._active.discard(f"memory_high:{key}")
        return found

    # --- shared ---------------------------------------------------------------------------------------------

    def _raise(self, found: list[HealthEvent], active_key: str, event: HealthEvent) -> None:
        if active_key in self._active:
            return
        self._active.add(active_key)
        found.append(event)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def state_dict(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events], "active": sorted(self._active),
                "best_loss": self._best_loss, "lowest_loss": self._lowest, "best_monitor": self._best_monitor, "norms": list(self._norms),
                "speeds": list(self._speeds)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.events = [HealthEvent(**e) for e in state["events"]]
        self._active = set(state["active"])
        self._best_loss = tuple(state["best_loss"]) if state["best_loss"] is not None else None
        lowest = state.get("lowest_loss", state["best_loss"])  # a checkpoint from before it was kept
        self._lowest = tuple(lowest) if lowest is not None else None
        self._best_monitor = tuple(state["best_monitor"]) if state["best_monitor"] is not None else None
        self._norms, self._speeds = list(state["norms"]), list(state["speeds"])
