"""What a run (or a tuning trial) used and cost, and a budget that stops it cleanly.

    meter = ResourceMeter(gpus=1)                      # starts measuring now
    ... work ...
    usage = meter.usage()                              # wall, CPU (this process and its children), GPU seconds
    cost_metrics(usage, config.cost.effective_rates()) # {"duration_s", "cpu_s", "gpu_s", "cost_usd"} for MLflow

    checker = BudgetChecker(config.budget, config.cost.effective_rates())
    if (stop := checker.poll()) is not None: ...       # cheap enough to call every step; stop.message says why

Cost = wall hours × machine_hour + CPU core-hours × cpu_core_hour + GPU hours × gpu_hour, in USD. A flat
per-machine price (a cloud instance type) is `machine_hour` (or `machine_types` + `machine_type`); usage-based
prices (a shared cluster that charges per core-hour) are the other two. Spot/preemptible prices are a second
set of rates chosen by `spot: true`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Rates(BaseModel):
    """USD per hour of each resource; 0 means that resource is not charged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine_hour: float = Field(0.0, ge=0, description="Per wall-clock hour the run holds the machine (a flat "
                                "instance price).")
    cpu_core_hour: float = Field(0.0, ge=0, description="Per core-hour of CPU time used (this process and its "
                                 "children; 2 cores busy for 1 hour = 2 core-hours).")
    gpu_hour: float = Field(0.0, ge=0, description="Per hour of each GPU the run used.")

    @property
    def charged(self) -> bool:
        return self.machine_hour > 0 or self.cpu_core_hour > 0 or self.gpu_hour > 0


class CostConfig(BaseModel):
    """Config section `cost`: what compute costs, for each run's `cost_usd` and `budget.max_cost`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rates: Rates = Field(default_factory=Rates, description="On-demand rates.")
    spot: bool = Field(False, description="The run uses spot/preemptible machines: spot_rates apply.")
    spot_rates: Rates | None = Field(None, description="Rates on spot/preemptible machines (needed with spot: true).")
    machine_types: dict[str, float] = Field(default_factory=dict, description="Flat USD per wall-clock hour by "
                                            "machine type, e.g. {m7i.xlarge: 0.20, g6.xlarge: 0.80}.")
    machine_type: str | None = Field(None, description="Which of machine_types this run uses (e.g. "
                                     "${oc.env:MACHINE_TYPE}); its price is the machine_hour rate.")

    @model_validator(mode="after")
    def _consistent(self) -> CostConfig:
        if self.spot and self.spot_rates is None:
            raise ValueError("spot_rates: spot: true needs the spot rates (e.g. spot_rates: {gpu_hour: 0.9})")
        if self.machine_type is not None:
            if self.machine_type not in self.machine_types:
                known = ", ".join(self.machine_types) or "none given"
                raise ValueError(f"machine_type: {self.machine_type!r} is not in machine_types ({known})")
            if self.active_rates.machine_hour > 0:
                raise ValueError("machine_type: a machine type's price replaces rates.machine_hour; give one of them")
        if any(price < 0 for price in self.machine_types.values()):
            raise ValueError("machine_types: a price cannot be negative")
        return self

    @property
    def active_rates(self) -> Rates:
        return self.spot_rates if self.spot and self.spot_rates is not None else self.rates

    def effective_rates(self) -> Rates:
        """The rates that apply to this run: on-demand or spot, with the machine type's flat price."""
        rates = self.active_rates
        if self.machine_type is not None:
            rates = rates.model_copy(update={"machine_hour": self.machine_types[self.machine_type]})
        return rates


class BudgetConfig(BaseModel):
    """Config section `budget`: limits for one run; training stops cleanly (checkpoint first) when one is reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cost: float | None = Field(None, gt=0, description="USD the run may spend (needs a rate in `cost`).")
    max_minutes: float | None = Field(None, gt=0, description="Wall-clock minutes the run may take.")


def budget_problems(budget: BudgetConfig, cost: CostConfig) -> list[str]:
    """Cross-section checks, one line each naming the key (for PipelineConfig's cross-checks)."""
    if budget.max_cost is not None and not cost.effective_rates().charged:
        return [("budget.max_cost: needs a price in cost.rates (machine_hour, cpu_core_hour or gpu_hour) or "
                 "cost.machine_type")]
    return []


@dataclass(frozen=True)
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system CPU seconds of the process tree
    gpu_s: float = 0.0  # GPU-seconds: wall seconds × GPUs in use

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s, self.gpu_s + other.gpu_s)


def estimate_cost(usage: Usage, rates: Rates) -> float:
    """USD for this usage at these rates."""
    return (usage.wall_s * rates.machine_hour + usage.cpu_s * rates.cpu_core_hour
            + usage.gpu_s * rates.gpu_hour) / 3600.0


def cost_metrics(usage: Usage, rates: Rates) -> dict[str, float]:
    """The metrics every run logs to MLflow."""
    return {"duration_s": round(usage.wall_s, 3), "cpu_s": round(usage.cpu_s, 3), "gpu_s": round(usage.gpu_s, 3),
            "cost_usd": estimate_cost(usage, rates)}


def process_tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, its finished children and its live descendants.

    getrusage counts a child only once it has been waited for; psutil adds the children still running (a
    DataLoader's workers, tuning workers, torchrun ranks) and what their own finished children used.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
    try:
        import psutil
    except ImportError:  # psutil ships with MLflow; without it, running children are counted when they end
        return total
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # it ended between the listing and the read: counted by getrusage once waited for
            continue
    return total


def gpus_in_use() -> int:
    """GPUs this process has initialised (CUDA through torch), without importing torch when nothing did."""
    import sys

    torch = sys.modules.get("torch")
    try:
        return int(torch.cuda.device_count()) if torch is not None and torch.cuda.is_initialized() else 0
    except Exception:  # a torch build without CUDA support
        return 0


class ResourceMeter:
    """Measures from its creation: `usage()` is what was used since then.

    gpus: GPUs this process uses (0 on CPU); GPU-seconds are wall seconds × gpus, which is what a cloud bills.
    """

    def __init__(self, gpus: int = 0, clock: Callable[[], float] = time.perf_counter,
                 cpu_seconds: Callable[[], float] = process_tree_cpu_seconds):
        self.gpus, self.clock, self.cpu_seconds = gpus, clock, cpu_seconds
        self.started, self.cpu_started = clock(), cpu_seconds()

    def wall_seconds(self) -> float:
        return self.clock() - self.started

    def usage(self) -> Usage:
        wall = self.wall_seconds()
        return Usage(wall, max(self.cpu_seconds() - self.cpu_started, 0.0), wall * self.gpus)


@dataclass(frozen=True)
class BudgetStop:
    key: str  # budget.max_minutes | budget.max_cost
    message: str
    usage: Usage
    cost_usd: float


class BudgetChecker:
    """Says when a `budget` is spent. `poll()` is cheap (a clock read) except every `check_every_s`, when it
    measures CPU time (a few ms: psutil reads the process table); once it has said stop it keeps saying so."""

    def __init__(self, budget: BudgetConfig, rates: Rates, meter: ResourceMeter | None = None,
                 check_every_s: float = 5.0, prior: Usage | None = None):
        """prior: usage before this process (a resumed run's earlier attempts), counted against the budget."""
        self.budget, self.rates, self.check_every_s = budget, rates, check_every_s
        self.meter = meter or ResourceMeter()
        self.prior = prior or Usage()
        self._cpu_at_check, self._next_check = 0.0, 0.0
        self._stop: BudgetStop | None = None

    @property
    def active(self) -> bool:
        return self.budget.max_minutes is not None or self.budget.max_cost is not None

    def poll(self) -> BudgetStop | None:
        if self._stop is not None or not self.active:
            return self._stop
        wall = self.meter.wall_seconds()
        if wall >= self._next_check:
            self._cpu_at_check = self.meter.usage().cpu_s
            self._next_check = wall + self.check_every_s
        gpus = self.meter.gpus
        usage = self.prior + Usage(wall, self._cpu_at_check, wall * gpus)
        cost = estimate_cost(usage, self.rates)
        b = self.budget
        if b.max_minutes is not None and usage.wall_s >= b.max_minutes * 60:
            self._stop = BudgetStop("budget.max_minutes", f"budget.max_minutes {b.max_minutes:g} reached after "
                                    f"{usage.wall_s / 60:.1f} minutes (${cost:.4f} spent)", usage, cost)
        elif b.max_cost is not None and cost >= b.max_cost:
            self._stop = BudgetStop("budget.max_cost", f"budget.max_cost ${b.max_cost:g} reached: ${cost:.4f} spent "
                                    f"in {usage.wall_s / 60:.1f} minutes ({usage.cpu_s / 60:.1f} CPU core-minutes"
                                    f"{f', {usage.gpu_s / 60:.1f} GPU-minutes' if usage.gpu_s else ''})", usage, cost)
        return self._stop
