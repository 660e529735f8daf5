"""Without the psycopg driver, anything PostgreSQL is one line naming the `postgres` extra (exit 2).

The driver is hidden from a real `trainpipe` process by an import hook, so these tests prove the message
whether or not psycopg is installed where they run; a control run without the hook shows that the hook,
not the machine, made the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PG_URL = "postgresql+psycopg://trainpipe_optuna@127.0.0.1:9/trainpipe_optuna"
HIDE_DRIVER = """
import sys

class HidePsycopg:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('psycopg', 'psycopg2', 'psycopg_binary', 'psycopg_c'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HidePsycopg())
"""


def trainpipe(*args: str, hide_driver: bool = True) -> subprocess.CompletedProcess:
    code = (HIDE_DRIVER if hide_driver else "import sys\n") + (
        f"sys.argv = ['trainpipe', *{list(args)!r}]\nfrom trainpipe.cli import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def pg_config(bc_config, write_config):
    def with_(**sections):
        doc = {**bc_config, **sections}
        return str(write_config(doc))

    return with_


def test_tuning_storage_on_postgresql_without_the_driver_names_the_extra(pg_config):
    line = one_error_line(trainpipe("tune", pg_config(tuning={"storage": PG_URL})))
    assert line == ("error: tuning.storage: the PostgreSQL driver psycopg is not installed; "
                    "pip install 'trainpipe[postgres]'")


def test_a_bare_postgresql_url_is_read_as_psycopg_3_and_names_the_extra(pg_config):
    line = one_error_line(trainpipe("tune", pg_config(tuning={"storage": PG_URL.replace("+psycopg", "")})))
    assert "tuning.storage: the PostgreSQL driver psycopg is not installed; pip install 'trainpipe[postgres]'" in line


def test_tracking_uri_on_postgresql_without_the_driver_names_the_extra(pg_config, store):
    line = one_error_line(trainpipe("run", pg_config(tracking={"uri": PG_URL})))
    assert line == ("error: tracking.uri: the PostgreSQL driver psycopg is not installed; "
                    "pip install 'trainpipe[postgres]'")
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())  # no run was started


def test_team_up_without_the_driver_names_the_extra(tmp_path):
    line = one_error_line(trainpipe("team", "up", "--dir", str(tmp_path / "team"), "--no-install"))
    assert line == "error: team: the PostgreSQL driver psycopg is not installed; pip install 'trainpipe[postgres]'"
    assert not (tmp_path / "team" / "team.json").exists()


def test_control_the_same_driver_check_passes_without_the_hook():
    check = f"from trainpipe.tracking.dburl import require_driver; require_driver({PG_URL!r}, 'tuning.storage'); print('ok')"
    hidden = subprocess.run([sys.executable, "-c", HIDE_DRIVER + check], capture_output=True, text=True, timeout=60)
    shown = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert hidden.returncode == 1 and "MissingDependency" in hidden.stderr
    assert shown.returncode == 0 and shown.stdout.strip() == "ok", shown.stderr
