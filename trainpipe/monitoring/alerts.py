"""The `alerts:` section and the `Alerter` that sends events to its channels.

    alerter = Alerter(config.alerts, state_file=store_root / STATE_FILE_NAME, credentials=[...])
    alerter.send(events.gate_failed(run_id, reasons))      # never raises, never waits longer than timeout_s

What `send` does, in order: drop the event when alerts are off, its kind is not in `alerts.events` or it is less
severe than `alerts.min_severity`; ask the throttle (dedup per kind+key within `dedup_minutes`, at most
`max_per_hour` alerts across every process of the store, errors exempt from the rate limit); remove credentials
from the summary and details (trainpipe/redaction.py); deliver to every channel at once, each in its own
daemon thread, waiting at most `timeout_s` in all. A channel that fails is logged once per process (a warning;
later failures at debug level) and reported in the returned outcome; the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from trainpipe.monitoring.channels import (
    ChannelError,
    EmailChannel,
    EmailConfig,
    TerminalChannel,
    WebhookChannel,
    WebhookConfig,
)
from trainpipe.monitoring.events import EVENT_KINDS, Event, EventKind, Severity, severity_rank
from trainpipe.monitoring.throttle import STATE_FILE_NAME, Throttle
from trainpipe.redaction import MIN_SCRUBBED_LENGTH, scrub

log = logging.getLogger(__name__)

__all__ = ["STATE_FILE_NAME", "AlertOutcome", "Alerter", "AlertsConfig", "Delivery", "redact_event"]


class AlertsConfig(BaseModel):
    """Config section `alerts`: which events go where. No channel configured: no alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Send alerts to the configured channels (false: keep the channels, "
                          "send nothing).")
    events: list[EventKind] = Field(default_factory=lambda: cast("list[EventKind]", list(EVENT_KINDS)), description="Which events alert: "
                                    "run_failed, run_finished, gate_failed, champion_changed, health, drift, "
                                    "budget_exceeded.")
    min_severity: Severity = Field("info", description="Send only events this severe or worse: info, warning, error.")
    dedup_minutes: float = Field(60.0, ge=0, description="An alert with the same kind and key (e.g. the same health "
                                 "check of the same run) is sent once within this many minutes.")
    max_per_hour: int | None = Field(20, ge=1, description="At most this many alerts per hour for the whole store "
                                     "(errors such as run_failed are never held back); null: no limit. The next "
                                     "alert sent says how many were held back.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Longest wait for all channels of one alert; a slow or "
                             "dead server never holds up the run longer.")
    terminal: bool = Field(False, description="Also print each alert as one line on stderr.")
    webhooks: dict[str, WebhookConfig] = Field(default_factory=dict, description="HTTP POST channels by name.")
    email: EmailConfig | None = Field(None, description="An SMTP channel.")

    @property
    def has_channels(self) -> bool:
        return bool(self.terminal or self.webhooks or self.email)

    def missing_environment(self, environ: Mapping[str, str] = os.environ) -> list[str]:
        """One line per environment variable a channel needs that is not set (for a pre-flight check)."""
        needed = [(f"alerts.webhooks.{name}.url_env", w.url_env) for name, w in self.webhooks.items()]
        if self.email is not None:
            needed += [(f"alerts.email.{key}", getattr(self.email, key)) for key in ("username_env", "password_env")
                       if getattr(self.email, key)]
        return [f"{key}: environment variable {var} is not set" for key, var in needed if not environ.get(var)]


@dataclass(frozen=True)
class Delivery:
    channel: str
    delivered: bool
    error: str | None = None


@dataclass(frozen=True)
class AlertOutcome:
    sent: bool  # passed the filters and the throttle
    reason: str | None = None  # why not
    deliveries: list[Delivery] = field(default_factory=list)


def _scrub_tree(value: Any, credentials: Sequence[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, list(credentials))
    if isinstance(value, Mapping):
        return {k: _scrub_tree(v, credentials) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_tree(v, credentials) for v in value]
    return value


def redact_event(event: Event, credentials: Sequence[str]) -> Event:
    """The event with every credential and URL password in its summary and details replaced by `<redacted>`."""
    return dataclasses.replace(event, summary=scrub(event.summary, list(credentials)),
                               details=_scrub_tree(event.details, credentials))


class Alerter:
    """Sends events to the channels of one `alerts` section; see the module docstring.

    state_file: the throttle's file in the store (None: this process only). credentials: secret values from
    the config (redaction.credential_values) to keep out of alerts; the channels add their own.
    """

    def __init__(self, config: AlertsConfig, state_file: Path | None, credentials: Sequence[str] = (),
                 environ: Mapping[str, str] = os.environ, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.channels: list[Any] = [WebhookChannel(name, hook, environ) for name, hook in config.webhooks.items()]
        if config.email is not None:
            self.channels.append(EmailChannel(config.email, environ))
        self.terminal = TerminalChannel(stream) if config.terminal else None
        self.throttle = Throttle(state_file, config.dedup_minutes * 60.0, config.max_per_hour, clock)
        self._credentials = list(credentials)
        self._reported: set[str] = set()

    def send(self, event: Event) -> AlertOutcome:
        try:
            return self._send(event)
        except Exception as exc:  # noqa: BLE001 -- an alert must never fail the run, whatever went wrong
            self._report_once("alerts", f"alerts: could not send {event.kind}: {exc!r}")
            return AlertOutcome(False, f"error: {exc}")

    def _send(self, event: Event) -> AlertOutcome:
        c = self.config
        if not c.enabled or not c.has_channels:
            return AlertOutcome(False, "alerts are off" if not c.enabled else "no alert channel is configured")
        if event.kind not in c.events:
            return AlertOutcome(False, f"{event.kind} is not in alerts.events")
        if severity_rank(event.severity) < severity_rank(c.min_severity):
            return AlertOutcome(False, f"{event.severity} is below alerts.min_severity {c.min_severity}")
        targets = [ch for ch in self.channels
                   if severity_rank(event.severity) >= severity_rank(ch.min_severity or c.min_severity)]
        if not targets and self.terminal is None:  # not counted against the rate limit or the dedup window
            return AlertOutcome(False, f"no channel takes {event.severity} alerts (min_severity)")
        admission = self.throttle.admit(event.identity, urgent=event.severity == "error")
        if not admission.send:
            log.debug("alerts: %s not sent: %s", event.identity, admission.reason)
            return AlertOutcome(False, admission.reason)
        event = redact_event(event, self._secrets())
        deliveries = []
        if self.terminal is not None:
            deliveries.append(self._attempt(self.terminal, event, admission.suppressed))
        deliveries += self._deliver_all(targets, event, admission.suppressed)
        return AlertOutcome(True, None, deliveries)

    def _secrets(self) -> list[str]:
        found = set(self._credentials)
        for channel in self.channels:
            found.update(channel.secrets())
        return sorted((s for s in found if len(s) >= MIN_SCRUBBED_LENGTH), key=len, reverse=True)

    def _deliver_all(self, channels: list[Any], event: Event, suppressed: int) -> list[Delivery]:
        """Every channel in its own daemon thread; wait at most timeout_s in all (a hung server is abandoned)."""
        results: dict[str, Delivery] = {}
        threads = []
        for channel in channels:
            thread = threading.Thread(target=lambda ch=channel: results.__setitem__(
                ch.name, self._attempt(ch, event, suppressed)), name=f"alert-{channel.name}", daemon=True)
            thread.start()
            threads.append((channel, thread))
        deadline = time.monotonic() + self.config.timeout_s
        out = []
        for channel, thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
            if channel.name in results:
                out.append(results[channel.name])
            else:
                message = f"{channel.key}: no answer within alerts.timeout_s ({self.config.timeout_s:g} s)"
                self._report_once(channel.name, f"alerts: {message}")
                out.append(Delivery(channel.name, False, message))
        return out

    def _attempt(self, channel: Any, event: Event, suppressed: int) -> Delivery:
        try:
            channel.deliver(event, suppressed, self.config.timeout_s)
            return Delivery(channel.name, True)
        except ChannelError as exc:
            message = scrub(str(exc), self._secrets())
        except Exception as exc:  # noqa: BLE001 -- a channel's bug must not fail the run either
            message = scrub(f"{channel.key}: {type(exc).__name__}: {exc}", self._secrets())
        self._report_once(channel.name, f"alerts: {message}")
        return Delivery(channel.name, False, message)

    def _report_once(self, name: str, line: str) -> None:
        if name in self._reported:
            log.debug("%s", line)
            return
        self._reported.add(name)
        log.warning("%s (further failures of this channel are not repeated)", line)
