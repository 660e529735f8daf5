"""Fault injection for the reliability suite: SIGKILL this process at a chosen moment inside one stage.

Python imports `sitecustomize` at start-up from any folder on PYTHONPATH, so a test puts this folder there for
the one `trainpipe` process it wants to kill; nothing in trainpipe knows about it. With
`TRAINPIPE_KILL_STAGE=NAME` and `TRAINPIPE_KILL_AFTER=SECONDS`, the stage's runner is wrapped: a timer SIGKILLs
the process that many seconds after the stage began, and if the stage's code returns first, the process is
killed right then (its outputs in the temporary folder, no manifest yet), so the kill always lands inside the
stage. `TRAINPIPE_KILL_MARK` names a file written just before the kill (which stage, how many seconds in).
`TRAINPIPE_HOLD_STAGE=NAME` instead holds the process at the start of that stage (writing the mark file) until
the test stops it: a run that is certainly alive, in a known stage.
"""

import os

if os.environ.get("TRAINPIPE_HOLD_STAGE"):
    import json
    import time

    from trainpipe.pipeline import stages as _stages

    _held = os.environ["TRAINPIPE_HOLD_STAGE"]
    _real_held = _stages.RUNNERS[_held]

    def _hold(ctx):
        with open(os.environ["TRAINPIPE_KILL_MARK"], "w") as handle:
            json.dump({"stage": _held, "pid": os.getpid()}, handle)
        while True:
            time.sleep(0.1)

    _stages.RUNNERS[_held] = _hold

if os.environ.get("TRAINPIPE_KILL_STAGE"):
    import json
    import signal
    import threading
    import time

    from trainpipe.pipeline import stages as _stages

    _stage = os.environ["TRAINPIPE_KILL_STAGE"]
    _after = float(os.environ.get("TRAINPIPE_KILL_AFTER", "0"))
    _real = _stages.RUNNERS[_stage]

    def _kill(began: float, where: str) -> None:
        mark = os.environ.get("TRAINPIPE_KILL_MARK")
        if mark:
            with open(mark, "w") as handle:
                json.dump({"stage": _stage, "seconds": round(time.monotonic() - began, 3), "where": where}, handle)
        os.kill(os.getpid(), signal.SIGKILL)

    def _wrapped(ctx):
        began = time.monotonic()
        timer = threading.Timer(_after, _kill, (began, "inside"))
        timer.daemon = True
        timer.start()
        result = _real(ctx)
        timer.cancel()
        _kill(began, "at the end")  # the stage's code returned first: kill before its manifest is written
        return result

    _stages.RUNNERS[_stage] = _wrapped
