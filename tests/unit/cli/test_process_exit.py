"""The console script's quick exit keeps what Python's own shutdown guarantees."""

import subprocess
import sys

import pytest

from trainpipe.cli.process_exit import exit_code

PROGRAM = """
import atexit, sys, threading, time
from trainpipe.cli.process_exit import exit_now
atexit.register(lambda: print("atexit ran", flush=False))
worker = threading.Thread(target=lambda: (time.sleep(0.3), sys.stdout.write("thread finished\\n")))
worker.start()
sys.stdout.write("x" * 200_000 + "\\n")  # more than any buffer: must all arrive
exit_now(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 3])
def test_exit_now_joins_threads_runs_atexit_flushes_and_keeps_the_status(status):
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(status)], capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == status, proc.stderr
    assert lines[0] == "x" * 200_000
    assert lines[1:] == ["thread finished", "atexit ran"]


def test_exit_now_does_not_wait_forever_on_an_idle_thread_pool_worker():
    program = ("from concurrent.futures import ThreadPoolExecutor\n"
               "pool = ThreadPoolExecutor(1)\n"
               "pool.submit(print, 'task ran').result()  # the worker now waits for work that never comes\n"
               "from trainpipe.cli.process_exit import exit_now\n"
               "exit_now(4)\n")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (4, "task ran\n"), proc.stderr


def test_exit_code_maps_system_exit_codes_as_python_does(capsys):
    assert exit_code(None) == 0
    assert exit_code(2) == 2
    assert exit_code("bad thing") == 1
    assert capsys.readouterr().err == "bad thing\n"


def test_the_console_script_exits_with_the_commands_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainpipe", "run", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr + proc.stdout
