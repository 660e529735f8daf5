"""Watching runs: alerts, cost and budgets, training health, resource metrics (docs/monitoring.md).

Building blocks, each with one job (none knows about stages or run folders; the caller wires them):
    events.py          the typed event every alert carries (kind, severity, run id, one-line summary, details)
    alerts.py          the `alerts:` section and `Alerter`: filter, throttle, fan out to the channels
    channels.py        delivery: webhook (JSON or Slack), email (SMTP + STARTTLS), terminal
    throttle.py        deduplication and rate limit, shared by every process of one store
    cost.py            the `cost:` and `budget:` sections, measured resource usage, cost estimates, budget checks
    health.py          the `health:` section and per-epoch/round checks that emit typed health events
    system_metrics.py  CPU/memory/GPU sampling through MLflow's system metrics, with a per-sample hook
"""
