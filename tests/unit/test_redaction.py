"""What counts as a secret, and how each view of a config hides it."""

import pytest

from trainpipe.redaction import (
    REDACTED,
    credential_values,
    env_sources,
    is_secret_name,
    redact_config,
    redact_url_credentials,
    redacted_keys,
    scrub,
)


@pytest.mark.parametrize("name", ["password", "DB_PASSWORD", "db-passwd", "pwd", "api_key", "apiKey", "X-API-KEY",
                                  "auth_token", "GITHUB_TOKEN", "client_secret", "aws_secret_access_key",
                                  "credentials", "private_key", "pass", "smtp_pw"])
def test_credential_like_names_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["passthrough", "compass", "path", "owner", "max_depth",
                                  "keyword", "tenure_months", "password_env", "token_env"])
def test_ordinary_names_are_not(name):
    assert not is_secret_name(name)


@pytest.mark.parametrize("text,expected", [
    ("postgresql://tp:s3cr3t@db:5432/optuna", f"postgresql://tp:{REDACTED}@db:5432/optuna"),
    ("mysql+pymysql://u:p%40ss@h/db?x=1", f"mysql+pymysql://u:{REDACTED}@h/db?x=1"),
    ("http://mlflow.internal:5000/api", "http://mlflow.internal:5000/api"),
    ("ssh://git@github.com/x", "ssh://git@github.com/x"),
    ("sqlite:////tmp/store/optuna.db", "sqlite:////tmp/store/optuna.db"),
    ("postgresql://tp:${oc.env:PW}@db/x", "postgresql://tp:${oc.env:PW}@db/x"),
    ("cannot open http://a:b1@h and https://c:d2@k", f"cannot open http://a:{REDACTED}@h and https://c:{REDACTED}@k"),
])
def test_url_passwords_are_redacted_and_nothing_else(text, expected):
    assert redact_url_credentials(text) == expected


def test_environment_values_and_references_to_them_are_found():
    raw = {"a": "${oc.env:X}", "b": {"c": "pre-${oc.env:Y,dflt}"}, "d": "${a}/more", "e": "${f}", "f": "plain"}
    resolved = {"a": "xval", "b": {"c": "pre-yval"}, "d": "xval/more", "e": "plain", "f": "plain"}
    assert env_sources(raw, resolved) == {("a",): "${oc.env:X}", ("b", "c"): "pre-${oc.env:Y,dflt}",
                                          ("d",): "${a}/more"}


def test_recorded_and_hashed_views():
    doc = {"seed": 7, "tags": {"db": "pw-from-env", "owner": "alice", "api_token": "tok-literal"},
           "url": "postgresql://u:lit-pw@h/db", "coerce": {"token_count": "int"}, "none_token": None}
    env = {("seed",): "${oc.env:SEED}", ("tags", "db"): "${oc.env:DB_PASSWORD}", ("tags", "owner"): "${oc.env:OWNER}"}
    recorded = redact_config(doc, env, (("coerce",),))
    assert recorded == {"seed": "${oc.env:SEED}", "tags": {"db": "${oc.env:DB_PASSWORD}", "owner": "${oc.env:OWNER}",
                                                            "api_token": REDACTED},
                        "url": f"postgresql://u:{REDACTED}@h/db", "coerce": {"token_count": "int"}, "none_token": None}
    hashed = redact_config(doc, env, (("coerce",),), for_hash=True)
    assert hashed["seed"] == 7 and hashed["tags"] == {"db": "${oc.env:DB_PASSWORD}", "owner": "alice",
                                                      "api_token": REDACTED}
    assert redacted_keys(recorded) == ["tags.api_token", "url"]


def test_scrub_removes_credential_values_from_free_text():
    doc = {"tags": {"db": "pw-from-env", "owner": "alice"}, "storage": "postgresql://u:lit-pw@h/db", "seed": 1}
    creds = credential_values(doc, {("tags", "db"): "${oc.env:DB_PASSWORD}", ("seed",): "${oc.env:SEED}"})
    assert "pw-from-env" in creds and "lit-pw" in creds and "alice" not in creds and "1" not in creds
    assert scrub("login failed for pw-from-env at postgresql://u:lit-pw@h/db", creds) == (
        f"login failed for {REDACTED} at postgresql://u:{REDACTED}@h/db")


def test_the_recorded_view_hides_secret_keys_at_any_depth_and_url_passwords_on_a_copy():
    """What the HTML report shows of a run's config.yaml (reports/sections_run.py), with the shared redaction."""
    doc = {"tracking": {"uri": "postgresql+psycopg://ml:s3cr%40t@db.local:5432/mlflow", "password": "hunter2",
                        "api_key": "k"},
           "alerts": [{"smtp_password": "p", "token": "t", "user": "me"}], "bypass": "keep", "max_depth": 6,
           "empty": {"password": None, "token": ""}}
    shown = redact_config(doc, {})
    assert shown["tracking"] == {"uri": f"postgresql+psycopg://ml:{REDACTED}@db.local:5432/mlflow",
                                 "password": REDACTED, "api_key": REDACTED}
    assert shown["alerts"] == [{"smtp_password": REDACTED, "token": REDACTED, "user": "me"}]
    assert shown["bypass"] == "keep" and shown["max_depth"] == 6
    assert shown["empty"] == {"password": None, "token": ""}  # nothing to hide
    assert doc["tracking"]["password"] == "hunter2"  # a copy: the run's config is untouched


def test_a_key_naming_an_environment_variable_is_recorded_as_written():
    doc = {"alerts": {"email": {"username_env": "SMTP_USER", "password_env": "SMTP_PASSWORD", "password": "hunter2"}}}
    assert redact_config(doc, {}) == {"alerts": {"email": {"username_env": "SMTP_USER",
                                                           "password_env": "SMTP_PASSWORD", "password": REDACTED}}}
