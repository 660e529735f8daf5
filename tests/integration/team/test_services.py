"""`trainpipe team up|status` against the real services: loopback only, a non-root server, one role per
database, passwords only in the pgpass file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli_json
from trainpipe.team.services import DATABASES, TeamSettings, _read_pgpass, read_state, up

pytestmark = pytest.mark.team


def test_up_again_starts_nothing_and_status_reports_both_services(team):
    doc = up(TeamSettings(team.dir, pg_port=team.pg_port, mlflow_port=team.mlflow_port, install=False))
    assert doc["started"] == 0 and doc["tracking_uri"] == team.tracking_uri
    code, status = run_cli_json("team", "status", "--dir", str(team.dir))
    assert code == 0, status
    assert status["postgres"]["running"] and status["mlflow"]["running"] and status["mlflow"]["answering"]
    assert status["tracking_uri"] == team.tracking_uri and status["optuna_storage"] == team.optuna_storage


def test_postgres_runs_as_a_non_root_user_and_listens_on_loopback_only(team):
    import psycopg

    state = read_state(team.dir)
    uid = int(next(line.split()[1] for line in Path(f"/proc/{state['postgres']['pid']}/status").read_text()
                   .splitlines() if line.startswith("Uid:")))
    assert uid != 0
    with psycopg.connect(team.optuna_storage.replace("+psycopg", ""), **_pgpass_env(team)) as connection:
        assert connection.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_each_role_reaches_only_its_own_database(team):
    import psycopg

    other = team.optuna_storage.replace("+psycopg", "").rsplit("/", 1)[0] + f"/{DATABASES['mlflow']}"
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry|permission denied"):
        psycopg.connect(other, **_pgpass_env(team)).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed|no password supplied"):
        psycopg.connect(team.optuna_storage.replace("+psycopg", ""), passfile="/dev/null",
                        connect_timeout=5).close()


def test_passwords_are_in_the_pgpass_file_only(team):
    assert oct(team.pgpass.stat().st_mode & 0o777) == "0o600"
    passwords = list(_read_pgpass(team.pgpass).values())
    assert len(passwords) == 2 and all(len(p) >= 24 for p in passwords)
    state = read_state(team.dir)
    places = [team.dir / "team.json", *sorted((team.dir / "logs").iterdir())]
    texts = [p.read_text(errors="replace") for p in places]
    texts += [Path(f"/proc/{state[s]['pid']}/cmdline").read_bytes().decode(errors="replace") for s in ("postgres",
                                                                                                      "mlflow")]
    assert not [place for place, text in zip(places + ["postgres argv", "mlflow argv"], texts)
                for password in passwords if password in text]


def _pgpass_env(team) -> dict:
    return {"passfile": str(team.pgpass), "connect_timeout": 5}


def test_status_of_a_folder_without_services_is_one_line(tmp_path, cli):
    proc = cli("team", "status", "--dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--dir: no team services recorded in" in proc.stderr


def test_team_json_holds_no_secret_and_the_uris_to_configure(team):
    doc = json.loads((team.dir / "team.json").read_text())
    assert doc["tracking_uri"] == team.tracking_uri
    assert doc["optuna_storage"].startswith("postgresql+psycopg://trainpipe_optuna@127.0.0.1:")
    assert "@" not in doc["tracking_uri"] and ":" not in doc["optuna_storage"].split("@")[0].split("//")[1]
    assert os.environ.get("PGPASSWORD") is None or os.environ["PGPASSWORD"] not in json.dumps(doc)


def test_a_port_in_use_is_one_line_and_leaves_nothing_behind(team, tmp_path, cli):
    folder = tmp_path / "second"
    proc = cli("team", "up", "--dir", str(folder), "--pg-port", str(team.pg_port), "--no-install")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"--pg-port: port {team.pg_port} on 127.0.0.1 is in use" in proc.stderr
    assert not folder.exists()


def test_a_folder_the_postgres_user_cannot_enter_is_one_line_naming_dir(team, tmp_path, cli):
    # as root PostgreSQL runs as the OS user postgres (otherwise as you): the project's machines run as root
    assert os.geteuid() == 0, "this case needs root: PostgreSQL runs as the OS user postgres only then"
    from tests.integration.team.conftest import _free_port

    folder = tmp_path / "private" / "team"  # under pytest's tmp folder: 0700, owned by root
    proc = cli("team", "up", "--dir", str(folder), "--pg-port", str(_free_port()), "--no-install")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"--dir: the OS user 'postgres' that runs PostgreSQL cannot write {folder}/postgres" in proc.stderr
    assert not folder.parent.exists()  # the folders that call created are gone again


def test_status_of_stopped_services_says_so_and_exits_2(tmp_path, cli):
    (tmp_path / "team.json").write_text(json.dumps({
        "postgres": {"pid": 2 ** 22 + 1, "start_time": 1, "port": 5433},  # above Linux's pid_max: never running
        "mlflow": {"port": 5000},
        "tracking_uri": "http://127.0.0.1:9", "optuna_storage": "postgresql+psycopg://x@127.0.0.1:5433/x"}))
    proc = cli("team", "status", "--dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "postgres  stopped" in proc.stdout and "mlflow    stopped" in proc.stdout and "not answering" in proc.stdout
