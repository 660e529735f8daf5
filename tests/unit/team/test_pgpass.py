"""The pgpass file `team up` writes is libpq's format (`:` and `\\` escaped) and mode 0600."""

from __future__ import annotations

from trainpipe.team.postgres import scram_verifier
from trainpipe.team.services import TeamSettings, _passwords, _read_pgpass, _write_pgpass


def test_pgpass_round_trips_passwords_with_separators(tmp_path):
    settings = TeamSettings(tmp_path, pg_port=6543)
    _write_pgpass(settings, {"mlflow": r"a:b\c", "optuna": "plain"})
    assert oct(settings.pgpass.stat().st_mode & 0o777) == "0o600"
    assert settings.pgpass.read_text().splitlines()[0] == r"127.0.0.1:6543:trainpipe_mlflow:trainpipe_mlflow:a\:b\\c"
    assert _read_pgpass(settings.pgpass) == {"trainpipe_mlflow": r"a:b\c", "trainpipe_optuna": "plain"}


def test_passwords_come_from_the_environment_then_the_pgpass_then_are_generated(tmp_path, monkeypatch):
    settings = TeamSettings(tmp_path)
    monkeypatch.setenv("TRAINPIPE_OPTUNA_DB_PASSWORD", "from-env")
    first = _passwords(settings)
    assert first["optuna"] == "from-env" and len(first["mlflow"]) >= 24
    _write_pgpass(settings, first)
    monkeypatch.delenv("TRAINPIPE_OPTUNA_DB_PASSWORD")
    assert _passwords(settings) == first  # a restart keeps the passwords the roles have


def test_scram_verifier_has_postgresqls_format_and_depends_on_the_salt():
    verifier = scram_verifier("pencil", salt=b"0123456789abcdef")
    assert verifier.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    assert verifier == scram_verifier("pencil", salt=b"0123456789abcdef")
    assert verifier != scram_verifier("pencil") and "pencil" not in verifier
