"""Cost rates, measured resource usage (real CPU work, real child processes) and the budget checker."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

from trainpipe.monitoring.cost import (
    BudgetChecker,
    BudgetConfig,
    CostConfig,
    Rates,
    ResourceMeter,
    Usage,
    budget_problems,
    cost_metrics,
    estimate_cost,
    process_tree_cpu_seconds,
)


def burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cost_adds_machine_cpu_and_gpu_hours():
    rates = Rates(machine_hour=0.5, cpu_core_hour=0.04, gpu_hour=2.0)
    usage = Usage(wall_s=1800, cpu_s=7200, gpu_s=3600)  # half an hour, 2 core-hours, 1 GPU-hour
    assert estimate_cost(usage, rates) == pytest.approx(0.25 + 0.08 + 2.0)
    assert cost_metrics(usage, rates) == {"duration_s": 1800, "cpu_s": 7200, "gpu_s": 3600,
                                          "cost_usd": pytest.approx(2.33)}


def test_spot_rates_and_machine_types_choose_the_prices():
    config = CostConfig(rates=Rates(gpu_hour=3.0), spot=True, spot_rates=Rates(gpu_hour=1.0),
                        machine_types={"g6.xlarge": 0.8}, machine_type="g6.xlarge")
    assert config.effective_rates() == Rates(machine_hour=0.8, gpu_hour=1.0)
    assert CostConfig(rates=Rates(gpu_hour=3.0)).effective_rates() == Rates(gpu_hour=3.0)


@pytest.mark.parametrize("doc, message", [
    ({"spot": True}, "spot_rates: spot: true needs the spot rates"),
    ({"machine_type": "p5", "machine_types": {"g6": 1.0}}, "machine_type: 'p5' is not in machine_types (g6)"),
    ({"machine_type": "g6", "machine_types": {"g6": 1.0}, "rates": {"machine_hour": 2}}, "give one of them"),
    ({"rates": {"gpu_hour": -1}}, "greater than or equal to 0"),
])
def test_inconsistent_cost_sections_are_refused_naming_the_key(doc, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CostConfig.model_validate(doc)


def test_a_cost_budget_without_prices_is_a_config_problem():
    assert budget_problems(BudgetConfig(max_cost=5), CostConfig()) == [
        "budget.max_cost: needs a price in cost.rates (machine_hour, cpu_core_hour or gpu_hour) or cost.machine_type"]
    assert budget_problems(BudgetConfig(max_cost=5), CostConfig(rates=Rates(cpu_core_hour=0.1))) == []
    assert budget_problems(BudgetConfig(max_minutes=5), CostConfig()) == []


def test_the_meter_counts_cpu_time_of_this_process():
    meter = ResourceMeter(gpus=2)
    burn_cpu(0.3)
    usage = meter.usage()
    assert 0.25 <= usage.cpu_s and usage.wall_s >= 0.25 and usage.gpu_s == pytest.approx(2 * usage.wall_s)


def test_the_meter_counts_children_while_they_run_and_after_they_end():
    before = process_tree_cpu_seconds()
    code = ("import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
            "import sys; sys.stdout.write('x'); sys.stdout.flush(); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout.read(1) == b"x"  # it has burnt its CPU and now sleeps, still running
        running = process_tree_cpu_seconds() - before
        assert running >= 0.55, running
    finally:
        child.kill()
        child.wait()
    after = process_tree_cpu_seconds() - before
    assert after >= running - 0.05  # reaped: getrusage counts it now, once


def test_the_budget_stops_on_minutes_and_keeps_saying_stop():
    now = [0.0]
    meter = ResourceMeter(clock=lambda: now[0], cpu_seconds=lambda: 0.0)
    checker = BudgetChecker(BudgetConfig(max_minutes=2), Rates(machine_hour=3.0), meter)
    now[0] = 119.0
    assert checker.poll() is None
    now[0] = 120.0
    stop = checker.poll()
    assert stop.key == "budget.max_minutes"
    assert stop.message == "budget.max_minutes 2 reached after 2.0 minutes ($0.1000 spent)"
    now[0] = 0.0
    assert checker.poll() is stop


def test_the_budget_stops_on_cost_from_measured_cpu_and_counts_earlier_attempts():
    now, cpu = [0.0], [0.0]
    meter = ResourceMeter(clock=lambda: now[0], cpu_seconds=lambda: cpu[0])
    checker = BudgetChecker(BudgetConfig(max_cost=1.0), Rates(cpu_core_hour=1.0), meter, check_every_s=10,
                            prior=Usage(wall_s=600, cpu_s=1800))  # an earlier attempt spent $0.50
    now[0], cpu[0] = 5.0, 1799.0
    assert checker.poll() is None  # CPU is measured at most every 10 s: still the first reading (0)
    now[0] = 10.0
    assert checker.poll() is None  # measured now: 1800 + 1799 s = $0.9997
    cpu[0], now[0] = 1801.0, 20.0
    stop = checker.poll()
    assert stop.key == "budget.max_cost" and stop.cost_usd == pytest.approx(1.00028, rel=1e-4)
    assert stop.message.startswith("budget.max_cost $1 reached: $1.0003 spent in 10.3 minutes (60.0 CPU core-minutes")


def test_an_empty_budget_never_stops_and_polls_cost_nothing():
    checker = BudgetChecker(BudgetConfig(), Rates())
    started = time.perf_counter()
    for _ in range(10_000):
        assert checker.poll() is None
    assert time.perf_counter() - started < 0.5


def test_polling_an_active_budget_is_cheap_between_measurements():
    checker = BudgetChecker(BudgetConfig(max_minutes=60), Rates(cpu_core_hour=1.0), check_every_s=60)
    started = time.perf_counter()
    for _ in range(10_000):
        checker.poll()
    per_poll = (time.perf_counter() - started) / 10_000
    assert per_poll < 50e-6, per_poll  # a training step can afford it
