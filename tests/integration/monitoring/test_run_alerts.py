"""Alerts, health events and `runs watch` of real runs: a `trainpipe run` subprocess posting to a loopback HTTP
server while `trainpipe runs watch` follows it from another process; a failed gate mailed through aiosmtpd over
STARTTLS; a dead webhook that the run shrugs off; `models promote/rollback --config` announcing the move."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

WEBHOOK_ENV = "TEST_ALERT_WEBHOOK_URL"
SMTP_ENV = {"TEST_SMTP_USER": "alerts", "TEST_SMTP_PASSWORD": "s3cret-smtp-pass"}


def trainpipe(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainpipe", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def events_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_a_real_run_alerts_the_webhook_while_runs_watch_follows_it_from_another_process(
        http_sink, bc_config, write_config, store):
    bc_config["model"]["params"] = {"n_estimators": 120, "learning_rate": 0.5, "max_depth": 6}
    bc_config["training"] = {"early_stopping_rounds": None, "threads": 1, "train_metrics": True}
    bc_config["alerts"] = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}}
    path = write_config(bc_config)
    env = {**os.environ, WEBHOOK_ENV: f"{http_sink.url}/hooks/team", "COLUMNS": "200"}
    run = subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--run-id", "watched", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not (store / "runs" / "watched" / "run.json").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        watched = trainpipe("runs", "watch", "watched", "--json", "--interval", "0.2", "--store", str(store), env=env)
        out, err = run.communicate(timeout=240)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert watched.returncode == 0, watched.stderr
    seen = json.loads(watched.stdout)
    assert seen["status"] == "completed" and seen["exit_code"] == 0 and seen["stage"] is None
    assert all(s["status"] in ("completed", "reused") for s in seen["stages"].values()) and "register" in seen["stages"]
    assert seen["event_counts"]["health.loss_stall"] == 1  # the training log-loss converges and stops moving
    assert seen["events"][-1]["kind"] == "run_finished" and seen["progress"]["unit"] == "round"

    # the webhook: each event once (health checks deduplicated per run and check), the run's end last
    bodies = [r["json"] for r in http_sink.requests]
    kinds = [b["kind"] for b in bodies]
    assert kinds[-2:] == ["champion_changed", "run_finished"] and "health" in kinds
    assert {r["path"] for r in http_sink.requests} == {"/hooks/team"}
    assert bodies[-2]["details"] == {"model": "bc", "alias": "champion", "old_version": None, "new_version": "1",
                                     "by": "register"}
    assert "registered bc v1 @challenger @champion" in bodies[-1]["summary"]
    stall = next(b for b in bodies if b["kind"] == "health" and b["details"]["check"] == "loss_stall")
    summary = stall["summary"]  # no gain at all, or a gain below the tolerance: both are a stall
    assert ("train_log_loss has not improved" in summary or "train_log_loss improved by only" in summary)
    assert "rounds" in summary
    # the run folder keeps every event, MLflow one tag and one metric per kind
    recorded = events_of(store / "runs" / "watched")
    assert [e["kind"] for e in recorded if e["kind"] != "health"] == ["champion_changed", "run_finished"]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    mlflow_run = client.get_run(seen["mlflow_run_id"])
    assert mlflow_run.data.tags["trainpipe.event.health.loss_stall"] == stall["summary"]
    assert [m.value for m in client.get_metric_history(mlflow_run.info.run_id, "events/health.loss_stall")] == [1.0]

    # a second version, then `models promote` and `models rollback` announce their moves through the same config
    from trainpipe.registry.client import Registry
    from trainpipe.store import Store
    from trainpipe.tracking.config import TrackingConfig

    registry = Registry(Store.locate(str(store)), TrackingConfig())
    first = registry.version("bc/1")
    registry.create_version("bc", store / "runs" / "watched" / "register" / "model", first.run_id, dict(first.tags), "")
    requests_before = len(http_sink.requests)
    from typer.testing import CliRunner

    from trainpipe.cli import app

    runner = CliRunner(env={WEBHOOK_ENV: env[WEBHOOK_ENV]})  # in this process: MLflow is imported already
    promoted = runner.invoke(app, ["models", "promote", "bc", "2", "--config", str(path), "--store", str(store), "--json"])
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["alerted"] is True
    rolled = runner.invoke(app, ["models", "rollback", "bc", "--config", str(path), "--store", str(store), "--json"])
    assert rolled.exit_code == 0, rolled.output
    moves = [r["json"]["summary"] for r in http_sink.requests[requests_before:]]
    assert moves == ["bc@champion: version 1 -> version 2 (models promote)",
                     "bc@champion: version 2 -> version 1 (models rollback)"]


def test_a_failed_gate_is_mailed_over_starttls_as_gate_failed_and_runs_watch_exits_3(
        smtp_sink, certificates, bc_config, store, monkeypatch):
    from typer.testing import CliRunner

    from trainpipe.cli import app
    from trainpipe.config import config_from_dict
    from trainpipe.errors import GateFailed
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    for name, value in SMTP_ENV.items():
        monkeypatch.setenv(name, value)
    bc_config["gates"] = {"min_test_rows": 1000}
    bc_config["alerts"] = {"email": {"host": "127.0.0.1", "port": smtp_sink.port, "from": "trainpipe@example.test",
                                     "to": ["ml-team@example.test"], "username_env": "TEST_SMTP_USER",
                                     "password_env": "TEST_SMTP_PASSWORD", "ca_file": str(certificates.ca_file)}}
    with pytest.raises(GateFailed):
        run_pipeline(config_from_dict(bc_config), Store.locate(str(store)), run_id="gated")
    (message,) = smtp_sink.messages  # gate_failed only: not a second mail saying the run failed
    assert message["Subject"].startswith("[trainpipe]") and "gate failed" in message["Subject"]
    assert "gates.min_test_rows" in message.get_body(("plain",)).get_content()
    assert smtp_sink.logins == [("alerts", "s3cret-smtp-pass")]
    assert [e["kind"] for e in events_of(store / "runs" / "gated")] == ["gate_failed"]

    result = CliRunner().invoke(app, ["runs", "watch", "gated", "--json", "--store", str(store)])
    assert result.exit_code == 3  # what `trainpipe run` exited with
    assert json.loads(result.stdout)["status"] == "failed"


def test_a_dead_webhook_is_logged_once_and_the_run_completes(bc_config, store, dead_port, monkeypatch, caplog):
    from trainpipe.config import config_from_dict
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{dead_port}/hook")
    bc_config["alerts"] = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}, "timeout_s": 1}
    with caplog.at_level(logging.WARNING, logger="trainpipe.monitoring.alerts"):
        summary = run_pipeline(config_from_dict(bc_config), Store.locate(str(store)), run_id="deaf")
    assert summary["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.name == "trainpipe.monitoring.alerts"]
    assert len(warnings) == 1 and "alerts.webhooks.team" in warnings[0]  # champion_changed and run_finished failed
    assert [e["kind"] for e in events_of(store / "runs" / "deaf")] == ["champion_changed", "run_finished"]
