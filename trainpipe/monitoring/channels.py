"""Where alerts go: a webhook (generic JSON or Slack's format), e-mail over SMTP with STARTTLS, the terminal.

Standard library only (urllib.request, smtplib, ssl, email): these are a handful of calls each, and a
dependency for them would outweigh them. Secrets never sit in the config: the webhook URL (Slack's carries its
token) and the SMTP credentials are read from environment variables named in the config, at delivery time.
TLS is always verified; `ca_file` names the CA bundle to trust instead of the system's (a company CA, or a
self-signed server in tests), never a way to turn verification off.

A channel raises `ChannelError` (one line, no secret in it) when delivery fails; `alerts.Alerter` logs it once
and carries on.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from typing import IO, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from trainpipe.monitoring.events import Event, Severity

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}
MAX_SLACK_FIELDS = 10  # Slack's limit for fields in one section block


class ChannelError(Exception):
    """Delivery failed; the message is one line and names the channel's config key, never a secret."""


def _env_name(value: str | None, key: str) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(f"{key}: give the NAME of an environment variable that holds the value (e.g. "
                         f"SLACK_WEBHOOK_URL), not the value itself")
    return value


# --- config -------------------------------------------------------------------------------------------------


class WebhookConfig(BaseModel):
    """`alerts.webhooks.<name>`: HTTP POST of a JSON body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url_env: str = Field(description="Name of the environment variable holding the URL (never the URL itself: "
                                     "a Slack webhook URL is a credential).")
    format: Literal["json", "slack"] = Field("json", description="json: trainpipe's event as JSON (kind, severity, "
                                             "run_id, summary, key, time, details, suppressed); slack: Slack's "
                                             "incoming-webhook payload (text + blocks).")
    min_severity: Severity | None = Field(None, description="Send only events this severe or worse; default "
                                          "alerts.min_severity.")
    ca_file: str | None = Field(None, description="PEM bundle of the CAs to trust for an https URL instead of the "
                                "system's (verification is never turned off).")

    @field_validator("url_env")
    @classmethod
    def _name(cls, value: str) -> str:
        return cast(str, _env_name(value, "url_env"))


class EmailConfig(BaseModel):
    """`alerts.email`: one message per alert over SMTP; credentials only from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(description="SMTP server.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587: submission with STARTTLS).")
    sender: str = Field(alias="from", description="The From address.")
    to: list[str] = Field(min_length=1, description="Recipients.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before anything is sent; a "
                           "server that does not offer it is an error. false only for a local relay without "
                           "credentials.")
    username_env: str | None = Field(None, description="Name of the environment variable holding the SMTP user.")
    password_env: str | None = Field(None, description="Name of the environment variable holding the SMTP password.")
    ca_file: str | None = Field(None, description="PEM bundle of the CAs to trust instead of the system's.")
    subject_prefix: str = Field("[trainpipe]", description="Start of every subject line.")
    min_severity: Severity | None = Field(None, description="Send only events this severe or worse; default "
                                          "alerts.min_severity.")

    @field_validator("username_env", "password_env")
    @classmethod
    def _names(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _env_name(value, info.field_name or "")

    @model_validator(mode="after")
    def _credentials(self) -> EmailConfig:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env: give both or neither")
        if self.username_env and not self.starttls:
            raise ValueError("starttls: credentials are never sent over an unencrypted connection; set starttls: true")
        return self


# --- payloads (pure) ----------------------------------------------------------------------------------------


def json_payload(event: Event, suppressed: int = 0) -> dict[str, Any]:
    return {**event.to_json(), "suppressed": suppressed}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: Event, suppressed: int = 0) -> dict[str, Any]:
    """Slack's incoming-webhook format: `text` (notifications, fallbacks) and blocks for the message."""
    icon = ICONS[event.severity]
    context = f"{event.severity} · {event.kind} · run `{event.run_id or '—'}` · {event.iso_time}"
    if suppressed:
        context += f" · {suppressed} more held back by the rate limit"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{_slack_escape(event.summary)}*"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]}]
    scalars = [(k, v) for k, v in event.details.items() if isinstance(v, (str, int, float, bool)) and v != ""]
    if scalars:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{_slack_escape(str(k))}*\n{_slack_escape(str(v))[:1900]}"}
            for k, v in scalars[:MAX_SLACK_FIELDS]]})
    return {"text": f"{icon} {event.summary}", "blocks": blocks}


def email_message(event: Event, sender: str, to: list[str], prefix: str, suppressed: int = 0) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"{prefix} {event.severity.upper()}: {event.summary}"[:250]
    message["From"], message["To"] = sender, ", ".join(to)
    lines = [event.summary, "", f"kind:     {event.kind}", f"severity: {event.severity}",
             f"run:      {event.run_id or '-'}", f"time:     {event.iso_time}"]
    if suppressed:
        lines += ["", (f"{suppressed} more alerts were held back by the rate limit (alerts.max_per_hour) since "
                       "the last one sent.")]
    if event.details:
        lines += ["", "details:", json.dumps(event.details, indent=2, default=str, ensure_ascii=False)]
    message.set_content("\n".join(lines) + "\n")
    return message


# --- delivery -----------------------------------------------------------------------------------------------


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying context; with ca_file only those CAs are trusted (ssl loads no system CAs then)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ChannelError(f"ca_file {ca_file}: cannot be read as PEM certificates ({exc})") from None


class WebhookChannel:
    def __init__(self, name: str, config: WebhookConfig, environ: Mapping[str, str] = os.environ):
        self.name, self.config, self.environ = f"webhook {name}", config, environ
        self.key = f"alerts.webhooks.{name}"

    @property
    def min_severity(self) -> Severity | None:
        return self.config.min_severity

    def secrets(self) -> list[str]:
        url = self.environ.get(self.config.url_env)
        return [url] if url else []

    def deliver(self, event: Event, suppressed: int, timeout_s: float) -> None:
        url = self.environ.get(self.config.url_env, "")
        if not url:
            raise ChannelError(f"{self.key}.url_env: environment variable {self.config.url_env} is not set")
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):  # urllib would also open file:// and ftp://
            raise ChannelError(f"{self.key}.url_env: {self.config.url_env} must hold an http(s) URL, not {scheme or 'a bare name'}")
        build = slack_payload if self.config.format == "slack" else json_payload
        body = json.dumps(build(event, suppressed), default=str).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "trainpipe-alerts"})
        context = _tls_context(self.config.ca_file) if scheme == "https" else None
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            raise ChannelError(f"{self.key}: the server answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChannelError(f"{self.key}: cannot post to ${self.config.url_env}: {reason}") from None


class EmailChannel:
    def __init__(self, config: EmailConfig, environ: Mapping[str, str] = os.environ):
        self.name, self.config, self.environ, self.key = "email", config, environ, "alerts.email"

    @property
    def min_severity(self) -> Severity | None:
        return self.config.min_severity

    def secrets(self) -> list[str]:
        password = self.environ.get(self.config.password_env or "")
        return [password] if password else []

    def deliver(self, event: Event, suppressed: int, timeout_s: float) -> None:
        c = self.config
        credentials = None
        if c.username_env:
            user, password = self.environ.get(c.username_env), self.environ.get(c.password_env or "")
            if not user or not password:
                missing = c.username_env if not user else c.password_env
                raise ChannelError(f"{self.key}: environment variable {missing} is not set")
            credentials = (user, password)
        message = email_message(event, c.sender, c.to, c.subject_prefix, suppressed)
        context = _tls_context(c.ca_file) if c.starttls else None
        try:
            with smtplib.SMTP(c.host, c.port, timeout=timeout_s) as smtp:
                smtp.ehlo()
                if context is not None:
                    smtp.starttls(context=context)  # raises when the server does not offer it: never downgrade
                    smtp.ehlo()
                if credentials:
                    smtp.login(*credentials)
                smtp.send_message(message)
        except smtplib.SMTPNotSupportedError:
            raise ChannelError(f"{self.key}.starttls: {c.host}:{c.port} does not offer STARTTLS") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"{self.key}: {c.host}:{c.port} refused the login from ${c.username_env} "
                               f"(SMTP {exc.smtp_code})") from None
        except ssl.SSLCertVerificationError as exc:
            raise ChannelError(f"{self.key}: the certificate of {c.host}:{c.port} is not trusted "
                               f"({exc.verify_message}); set alerts.email.ca_file to its CA") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"{self.key}: cannot send through {c.host}:{c.port}: "
                               f"{' '.join(str(exc).split()) or type(exc).__name__}") from None


class TerminalChannel:
    """One line per alert on stderr (or the given stream): the run's own console or log file."""

    name, key, min_severity = "terminal", "alerts.terminal", None

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream

    def secrets(self) -> list[str]:
        return []

    def deliver(self, event: Event, suppressed: int, timeout_s: float) -> None:
        more = f" (+{suppressed} held back by the rate limit)" if suppressed else ""
        stream = self.stream or sys.stderr
        stream.write(f"alert {event.severity}: {event.summary}{more}\n")
        stream.flush()
