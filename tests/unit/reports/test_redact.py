"""The report's config view hides secrets (a local redaction until the project has a shared one)."""

from __future__ import annotations

from trainpipe.reports.redact import redact, redact_text


def test_secret_looking_keys_are_hidden_at_any_depth():
    doc = {"tracking": {"uri": None, "password": "hunter2", "api_key": "k"},
           "alerts": [{"smtp_password": "p", "token": "t", "user": "me"}], "bypass": "keep", "max_depth": 6}
    shown = redact(doc)
    assert shown["tracking"] == {"uri": None, "password": "***", "api_key": "***"}
    assert shown["alerts"] == [{"smtp_password": "***", "token": "***", "user": "me"}]
    assert shown["bypass"] == "keep" and shown["max_depth"] == 6
    assert doc["tracking"]["password"] == "hunter2"  # a copy: the run's config is untouched


def test_url_passwords_are_hidden_and_the_rest_of_the_url_kept():
    assert redact_text("postgresql+psycopg://ml:s3cr%40t@db.local:5432/mlflow") == \
        "postgresql+psycopg://ml:***@db.local:5432/mlflow"
    assert redact_text("https://user:pw@host/x and sqlite:////tmp/a.db") == "https://user:***@host/x and sqlite:////tmp/a.db"
    assert redact({"tuning": {"storage": "mysql://root:pw@h/optuna"}})["tuning"]["storage"] == "mysql://root:***@h/optuna"


def test_urls_without_credentials_and_empty_secrets_are_unchanged():
    assert redact_text("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redact({"password": None, "token": ""}) == {"password": None, "token": ""}
