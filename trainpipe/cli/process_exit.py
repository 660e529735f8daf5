"""Leaving the process once a command has finished, without Python's module-by-module teardown.

Why by hand: a `trainpipe run` has ~3,000 modules loaded (MLflow, SQLAlchemy, scikit-learn, SciPy, xgboost), and
the interpreter's finalisation, which frees them and every object they hold one by one, took 0.7-1.5 s of each
command's wall time (benchmarks/bench_skeleton.py; 0.04 s this way). No library offers this; `os._exit` skips
finalisation, so what finalisation does that matters is done here first, in its order.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_code(code: object) -> int:
    """SystemExit's code as the process status, as Python maps it: None is 0, a message is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object) -> NoReturn:
    """Finish like Python's shutdown (threading's exit hooks run, e.g. idle ThreadPoolExecutor workers told to stop,
    and non-daemon threads joined; atexit handlers run: MLflow's and logging's flushes; the standard streams
    flushed), then end the process without freeing its modules."""
    status = exit_code(code)
    # CPython's own (private) first step of Py_Finalize: joining threads by hand would wait forever on an executor's
    # idle worker, which only threading's exit hook tells to stop.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()  # CPython's own (private) runner of the handlers, as Py_Finalize calls it
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`trainpipe ... | head`): Python would fail the exit too
            status = status or 120
    os._exit(status)
