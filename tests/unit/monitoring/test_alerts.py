"""The alerts section, events, payloads, redaction and the throttle (no network: servers are in tests/integration)."""

from __future__ import annotations

import io
import json

import pytest
from pydantic import ValidationError

from trainpipe.monitoring import events
from trainpipe.monitoring.alerts import Alerter, AlertsConfig, redact_event
from trainpipe.monitoring.channels import email_message, slack_payload
from trainpipe.monitoring.events import Event
from trainpipe.monitoring.throttle import Throttle


class Clock:
    """Time that a test moves by hand (the throttle's windows are minutes long)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_webhook_url_written_in_the_config_is_refused():
    with pytest.raises(ValidationError, match="url_env: give the NAME of an environment variable"):
        AlertsConfig.model_validate({"webhooks": {"s": {"url_env": "https://hooks.slack.com/services/T/B/x"}}})


def test_email_credentials_need_starttls_and_come_in_pairs():
    base = {"host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]}
    with pytest.raises(ValidationError, match="credentials are never sent over an unencrypted connection"):
        AlertsConfig.model_validate({"email": {**base, "starttls": False, "username_env": "U", "password_env": "P"}})
    with pytest.raises(ValidationError, match="username_env and password_env: give both or neither"):
        AlertsConfig.model_validate({"email": {**base, "username_env": "U"}})
    assert AlertsConfig.model_validate({"email": base}).email.sender == "a@example.com"


def test_unknown_event_kinds_and_keys_are_refused():
    with pytest.raises(ValidationError):
        AlertsConfig.model_validate({"events": ["run_exploded"]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        AlertsConfig.model_validate({"webhook": {"url_env": "X"}})


def test_missing_environment_names_each_unset_variable():
    config = AlertsConfig.model_validate({
        "webhooks": {"slack": {"url_env": "SLACK_URL"}},
        "email": {"host": "h", "from": "a@x", "to": ["b@x"], "username_env": "SMTP_USER", "password_env": "SMTP_PW"}})
    assert config.missing_environment({"SMTP_USER": "u"}) == [
        "alerts.webhooks.slack.url_env: environment variable SLACK_URL is not set",
        "alerts.email.password_env: environment variable SMTP_PW is not set"]


def test_an_event_summary_is_one_line_and_its_identity_is_kind_and_key():
    event = Event("health", "warning", "loss\nstalled  for 5 epochs", "r1", key="r1:loss_stall")
    assert event.summary == "loss stalled for 5 epochs" and event.identity == "health:r1:loss_stall"
    assert Event("run_failed", "error", "x", "r2").identity == "run_failed:r2"
    with pytest.raises(ValueError, match="unknown severity"):
        Event("health", "fatal", "x")


def test_moving_an_alias_there_and_back_are_two_alerts_not_duplicates():
    there = events.champion_changed("m", "champion", 6, 7, by="models promote")
    back = events.champion_changed("m", "champion", 7, 6, by="models rollback")
    assert there.identity != back.identity
    first = events.champion_changed("m", "champion", None, 6, by="register")  # the first champion, rolled back to later
    assert first.identity not in (there.identity, back.identity)


def test_slack_payload_escapes_markup_and_caps_the_fields():
    event = Event("drift", "error", "a <b> & c", "r", details={f"k{i}": i for i in range(15)} | {"nested": {"x": 1}})
    payload = slack_payload(event, suppressed=2)
    assert payload["blocks"][0]["text"]["text"] == ":rotating_light: *a &lt;b&gt; &amp; c*"
    assert "2 more held back by the rate limit" in payload["blocks"][1]["elements"][0]["text"]
    assert len(payload["blocks"][2]["fields"]) == 10  # Slack refuses more than 10 fields per section


def test_email_subject_carries_prefix_severity_and_summary():
    message = email_message(events.gate_failed("r9", ["a", "b"]), "from@x", ["to@x"], "[ml]")
    assert message["Subject"] == "[ml] WARNING: run r9: gate failed: a (+1 more)"
    assert json.loads(message.get_content().split("details:\n", 1)[1]) == {"reasons": ["a", "b"]}


def test_redaction_covers_summary_and_nested_details():
    event = Event("run_failed", "error", "cannot reach postgresql://u:pw1234@h/db", "r",
                  details={"error": ["token tok-abcdef leaked"], "n": 3})
    clean = redact_event(event, ["tok-abcdef"])
    assert clean.summary == "cannot reach postgresql://u:<redacted>@h/db"
    assert clean.details == {"error": ["token <redacted> leaked"], "n": 3}


def test_terminal_channel_prints_one_line_per_alert_sent():
    stream = io.StringIO()
    alerter = Alerter(AlertsConfig(terminal=True), None, stream=stream)
    alerter.send(events.run_failed("r1", "train", "loss nan"))
    alerter.send(events.run_failed("r1", "train", "loss nan"))  # a duplicate: not printed again
    assert stream.getvalue() == "alert error: run r1 failed at stage train: loss nan\n"


def test_events_below_min_severity_or_with_alerts_disabled_are_not_sent():
    stream = io.StringIO()
    assert "below alerts.min_severity" in Alerter(AlertsConfig(terminal=True, min_severity="warning"), None,
                                                  stream=stream).send(events.run_finished("r", "ok")).reason
    assert Alerter(AlertsConfig(terminal=True, enabled=False), None, stream=stream).send(
        events.run_failed("r", None, "x")).reason == "alerts are off"
    assert Alerter(AlertsConfig(), None).send(events.run_failed("r", None, "x")).reason == \
        "no alert channel is configured"
    assert stream.getvalue() == ""


def test_throttle_drops_a_repeat_within_the_dedup_window_and_sends_it_after():
    clock = Clock()
    throttle = Throttle(None, dedup_s=600, max_per_hour=None, clock=clock)
    assert throttle.admit("health:r:stall").send
    clock.now += 599
    assert not throttle.admit("health:r:stall").send and throttle.admit("health:r:nan").send
    clock.now += 2
    assert throttle.admit("health:r:stall").send


def test_rate_limit_counts_the_last_hour_exempts_errors_and_reports_what_it_held_back(tmp_path):
    clock = Clock()
    throttle = Throttle(tmp_path / "state.json", dedup_s=0, max_per_hour=2, clock=clock)
    assert [throttle.admit(f"k{i}").send for i in range(4)] == [True, True, False, False]
    urgent = throttle.admit("run_failed:r", urgent=True)
    assert urgent.send and urgent.suppressed == 2
    clock.now += 3601
    assert throttle.admit("k9").send
    # the state is in the file: a second throttle (another process) sees the same history
    assert not Throttle(tmp_path / "state.json", dedup_s=0, max_per_hour=1, clock=clock).admit("k10").send


def test_an_unreadable_state_file_starts_afresh_rather_than_stopping_alerts(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    assert Throttle(state, dedup_s=60, max_per_hour=5).admit("a").send
    assert json.loads(state.read_text())["sent"].keys() == {"a"}


def test_a_store_that_cannot_be_written_falls_back_to_this_process(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the store folder should be: nothing can be created under it
    throttle = Throttle(blocker / "alerts-state.json", dedup_s=60, max_per_hour=5)
    assert throttle.admit("a").send and not throttle.admit("a").send
    assert "deduplicates its own alerts only" in caplog.text


def test_an_event_no_channel_takes_does_not_use_up_the_dedup_window(tmp_path):
    config = AlertsConfig.model_validate({"email": {"host": "h", "from": "a@x", "to": ["b@x"], "min_severity": "error"},
                                          "max_per_hour": 1})
    alerter = Alerter(config, tmp_path / "state.json")
    outcome = alerter.send(events.gate_failed("r1", ["x"]))  # a warning; the only channel wants errors
    assert not outcome.sent and outcome.reason == "no channel takes warning alerts (min_severity)"
    assert not (tmp_path / "state.json").exists()
