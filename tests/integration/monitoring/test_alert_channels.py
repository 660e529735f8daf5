"""Alerts delivered to real servers on loopback: an HTTP server (webhook, JSON and Slack), aiosmtpd with STARTTLS
and a certificate only the test's CA vouches for, dead and silent servers, and the throttle across processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from trainpipe.monitoring import events
from trainpipe.monitoring.alerts import Alerter, AlertsConfig
from trainpipe.monitoring.events import Event

REPO = Path(__file__).resolve().parents[3]
WEBHOOK_ENV = "TEST_ALERT_WEBHOOK_URL"
SMTP_ENV = {"TEST_SMTP_USER": "alerts", "TEST_SMTP_PASSWORD": "s3cret-smtp-pass"}


def webhook_alerter(url: str, tmp_path: Path, fmt: str = "json", **section) -> Alerter:
    config = AlertsConfig.model_validate({"webhooks": {"team": {"url_env": WEBHOOK_ENV, "format": fmt}}, **section})
    return Alerter(config, tmp_path / "alerts-state.json", environ={WEBHOOK_ENV: url})


def email_section(port: int, ca_file: Path | None, **extra) -> dict:
    return {"email": {"host": "127.0.0.1", "port": port, "from": "trainpipe@example.test",
                      "to": ["ml-team@example.test", "oncall@example.test"], "username_env": "TEST_SMTP_USER",
                      "password_env": "TEST_SMTP_PASSWORD", "ca_file": str(ca_file) if ca_file else None, **extra}}


def test_webhook_receives_the_event_as_json(http_sink, tmp_path):
    alerter = webhook_alerter(http_sink.url + "/hooks/T0/B0", tmp_path)
    outcome = alerter.send(events.gate_failed("run-1", ["gates.min_metrics.roc_auc: 0.81 < 0.85"]))
    assert outcome.sent and [d.delivered for d in outcome.deliveries] == [True]
    (request,) = http_sink.requests
    assert request["path"] == "/hooks/T0/B0"
    assert request["headers"]["Content-Type"].startswith("application/json")
    body = request["json"]
    assert body["source"] == "trainpipe" and body["kind"] == "gate_failed" and body["severity"] == "warning"
    assert body["run_id"] == "run-1" and "roc_auc: 0.81 < 0.85" in body["summary"]
    assert body["details"]["reasons"] == ["gates.min_metrics.roc_auc: 0.81 < 0.85"] and body["suppressed"] == 0


def test_webhook_in_slack_format_carries_text_and_blocks(http_sink, tmp_path):
    alerter = webhook_alerter(http_sink.url, tmp_path, fmt="slack")
    alerter.send(events.champion_changed("churn", "champion", 3, 4, by="models promote"))
    body = http_sink.requests[0]["json"]
    assert set(body) == {"text", "blocks"}
    assert "churn@champion: version 3 -> version 4 (models promote)" in body["text"]
    assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "version 3 -&gt; version 4" in body["blocks"][0]["text"]["text"]  # Slack's escaping of < > &
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][2]["fields"]}
    assert fields["*by*"] == "models promote" and fields["*new_version*"] == "4"


def test_secrets_never_reach_the_webhook(http_sink, tmp_path):
    url = http_sink.url + "/services/T000/B000/xoxb-webhook-token-123"
    config = AlertsConfig.model_validate({"webhooks": {"team": {"url_env": WEBHOOK_ENV}}})
    alerter = Alerter(config, None, credentials=["db-password-42"], environ={WEBHOOK_ENV: url})
    alerter.send(events.run_failed("run-2", "ingest", f"cannot read postgresql://bob:hunter22@db/x with "
                                                      f"db-password-42; posted to {url}"))
    text = json.dumps(http_sink.requests[0]["json"])
    assert "hunter22" not in text and "db-password-42" not in text and "xoxb-webhook-token-123" not in text
    assert text.count("<redacted>") >= 3


def test_email_goes_out_over_starttls_verified_against_the_ca_file(smtp_sink, certificates, tmp_path):
    config = AlertsConfig.model_validate(email_section(smtp_sink.port, certificates.ca_file))
    alerter = Alerter(config, tmp_path / "alerts-state.json", environ=SMTP_ENV)
    outcome = alerter.send(events.run_failed("run-3", "train", "loss became nan at epoch 4"))
    assert [(d.channel, d.delivered, d.error) for d in outcome.deliveries] == [("email", True, None)]
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[trainpipe] ERROR: run run-3 failed at stage train: loss became nan at epoch 4"
    assert message["From"] == "trainpipe@example.test"
    assert smtp_sink.envelopes[0].rcpt_tos == ["ml-team@example.test", "oncall@example.test"]
    assert "loss became nan at epoch 4" in message.get_content() and "run:      run-3" in message.get_content()
    assert smtp_sink.logins == [("alerts", "s3cret-smtp-pass")]  # the server only allows AUTH after STARTTLS


def test_email_to_a_server_whose_certificate_is_not_trusted_fails_once_without_raising(smtp_sink, tmp_path, caplog):
    config = AlertsConfig.model_validate(email_section(smtp_sink.port, None))  # system CAs: the test CA is unknown
    alerter = Alerter(config, None, environ=SMTP_ENV)
    with caplog.at_level(logging.DEBUG, logger="trainpipe.monitoring.alerts"):
        first = alerter.send(events.run_failed("run-4", None, "boom"))
        second = alerter.send(events.run_failed("run-5", None, "boom"))
    for outcome in (first, second):
        (delivery,) = outcome.deliveries
        assert not delivery.delivered and "not trusted" in delivery.error and "alerts.email.ca_file" in delivery.error
    assert smtp_sink.messages == [] and smtp_sink.logins == []  # no credential left the client
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not trusted" in warnings[0].getMessage()


def test_a_server_without_starttls_is_refused_not_downgraded(tmp_path, certificates):
    from aiosmtpd.controller import Controller

    from tests.integration.monitoring.conftest import free_port

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)  # plain SMTP, no TLS offered
    controller.start()
    try:
        section = email_section(port, certificates.ca_file)
        del section["email"]["username_env"], section["email"]["password_env"]
        outcome = Alerter(AlertsConfig.model_validate(section), None).send(events.run_failed("r", None, "x"))
    finally:
        controller.stop()
    assert "does not offer STARTTLS" in outcome.deliveries[0].error and received == []


def test_dead_channels_are_logged_once_and_never_raise(dead_port, tmp_path, caplog, certificates):
    section = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}, **email_section(dead_port, certificates.ca_file),
               "timeout_s": 2}
    alerter = Alerter(AlertsConfig.model_validate(section), None,
                      environ={WEBHOOK_ENV: f"http://127.0.0.1:{dead_port}/hook", **SMTP_ENV})
    with caplog.at_level(logging.WARNING, logger="trainpipe.monitoring.alerts"):
        outcomes = [alerter.send(events.run_failed(f"run-{i}", None, "x")) for i in range(3)]
    for outcome in outcomes:
        assert outcome.sent and {d.channel: d.delivered for d in outcome.deliveries} == {"webhook team": False,
                                                                                          "email": False}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one per channel, not one per alert
    assert any("alerts.webhooks.team: cannot post to $TEST_ALERT_WEBHOOK_URL" in line for line in lines)
    assert any(f"alerts.email: cannot send through 127.0.0.1:{dead_port}" in line for line in lines)


def test_a_silent_server_holds_an_alert_no_longer_than_timeout_s(silent_server, certificates):
    section = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}, **email_section(silent_server, certificates.ca_file),
               "timeout_s": 0.5}
    alerter = Alerter(AlertsConfig.model_validate(section), None,
                      environ={WEBHOOK_ENV: f"http://127.0.0.1:{silent_server}/hook", **SMTP_ENV})
    started = time.monotonic()
    outcome = alerter.send(events.run_failed("run-6", None, "x"))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed  # both channels together, not 0.5 s each plus SMTP's several round trips
    assert not any(d.delivered for d in outcome.deliveries)


def _run_senders(tmp_path: Path, config: dict, url: str, jobs: list[list[dict]]) -> list[list[dict]]:
    """Each job in its own process, all starting to send at the same instant, through one store's state file."""
    state_file, start_at = tmp_path / "store" / "alerts-state.json", time.time() + 4.0
    procs = []
    for i, job_events in enumerate(jobs):
        job = tmp_path / f"job{i}.json"
        job.write_text(json.dumps({"config": config, "state_file": str(state_file), "start_at": start_at,
                                   "events": job_events}))
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.integration.monitoring.alert_sender", str(job)],
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, WEBHOOK_ENV: url}))
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append([json.loads(line) for line in out.splitlines()])
    return outputs


def test_two_processes_sending_the_same_alert_at_once_deliver_it_once(http_sink, tmp_path):
    config = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}}
    same = {"kind": "health", "severity": "warning", "summary": "loss stalled", "run_id": "run-7", "key": "run-7:stall"}
    outputs = _run_senders(tmp_path, config, http_sink.url, [[same], [same]])
    assert sorted(o[0]["sent"] for o in outputs) == [False, True]
    assert [r["json"]["summary"] for r in http_sink.requests] == ["loss stalled"]
    refused = next(o[0] for o in outputs if not o[0]["sent"])
    assert "alerts.dedup_minutes" in refused["reason"]


def test_the_rate_limit_holds_across_processes_and_errors_still_go_out(http_sink, tmp_path):
    config = {"webhooks": {"team": {"url_env": WEBHOOK_ENV}}, "max_per_hour": 3}
    jobs = [[{"kind": "drift", "severity": "warning", "summary": f"drift {p}{i}", "run_id": f"r{p}{i}"}
             for i in range(3)] for p in "ab"]
    _run_senders(tmp_path, config, http_sink.url, jobs)
    alerter = Alerter(AlertsConfig.model_validate(config), tmp_path / "store" / "alerts-state.json",
                      environ={WEBHOOK_ENV: http_sink.url})
    assert alerter.send(Event("drift", "warning", "drift c0", "rc0")).reason.endswith("(alerts.max_per_hour)")
    alerter.send(events.run_failed("rb9", None, "boom"))
    summaries = [r["json"]["summary"] for r in http_sink.requests]
    assert len([s for s in summaries if s.startswith("drift")]) == 3, summaries
    assert summaries[-1] == "run rb9 failed: boom"  # an error is never held back by the rate limit
    assert http_sink.requests[-1]["json"]["suppressed"] == 4  # and it says how many alerts were held back


def test_an_event_kind_left_out_of_alerts_events_is_not_sent(http_sink, tmp_path):
    alerter = webhook_alerter(http_sink.url, tmp_path, events=["run_failed"])
    outcome = alerter.send(Event("run_finished", "info", "run r finished", "r"))
    assert not outcome.sent and "not in alerts.events" in outcome.reason and http_sink.requests == []
