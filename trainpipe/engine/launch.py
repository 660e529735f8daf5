"""Launch a fit on several processes with torchrun (`python -m torch.distributed.run`) and learn how it ended.

torchrun does the process work: it starts the ranks, sets their environment (RANK, WORLD_SIZE, MASTER_ADDR...),
and when one rank fails it stops the others. What trainpipe adds is the part torchrun leaves to the caller:
- the console shows rank 0's output only (torchrun's `--tee` with `--local-ranks-filter 0`, the `[default0]:`
  prefix removed); torchrun's own messages and every rank's output go to a log file next to the checkpoints;
- SIGTERM or SIGINT to this process is passed to torchrun as SIGTERM, which passes it to every rank: the ranks
  checkpoint at the same step and stop (engine/loop.py), as one process does;
- each rank leaves a small status file (`write_status`) saying how it ended, so that the outcome is one line:
  done, preempted (exit 143), the rank's own error (its class and line), or a rank that died without a word
  (killed, crashed), named with its exit code from torchrun's summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from trainpipe import errors
from trainpipe.engine.config import DistributedConfig
from trainpipe.errors import Preempted, RunError, TrainpipeError

CONSOLE_PREFIX = "[default0]:"  # torchrun --tee: lines of local rank 0 ("default" is the role name)


class RankDied(RunError):
    """A training process ended without reporting (killed, out of host memory, a crash in native code)."""


@dataclass(frozen=True)
class Outcome:
    """How one rank ended: `done`, `preempted`, `released` (nothing to train) or `error` (with its message)."""

    rank: int
    outcome: str
    message: str = ""
    error_type: str = ""
    exit_code: int = 0
    key: str | None = None
    path: Path | None = None  # the status file (an unexpected error's traceback is in it)


def status_path(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.json"


def write_status(folder: Path, rank: int, outcome: str, error: BaseException | None = None,
                 trace: str | None = None) -> None:
    """The rank's last word, written whole (a rename), read by `launch` after torchrun returns; `trace`: the
    traceback of an unexpected error, kept in the file rather than shown."""
    doc: dict[str, Any] = {"rank": rank, "outcome": outcome}
    if error is not None:
        first = (str(error).strip().splitlines() or [""])[0]
        doc.update(message=getattr(error, "message", None) or f"{type(error).__name__}: {first}",
                   error_type=type(error).__name__, exit_code=getattr(error, "exit_code", 1),
                   key=getattr(error, "key", None), traceback=trace)
    target = status_path(folder, rank)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, target)


def read_status(folder: Path, rank: int) -> Outcome | None:
    try:
        doc = json.loads(status_path(folder, rank).read_text())
    except (OSError, ValueError):
        return None
    return Outcome(rank, doc["outcome"], doc.get("message", ""), doc.get("error_type", ""), doc.get("exit_code", 0),
                   doc.get("key"), status_path(folder, rank))


def torchrun_command(config: DistributedConfig, run_id: str, log_dir: Path, module: str, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run ... -m module args`: one machine on a free local port (`--standalone`),
    several through the c10d rendezvous at `rdzv_endpoint` (the run id names the job)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={config.nproc_per_node}",
               "--max-restarts=0", f"--log-dir={log_dir}", "--tee=3", "--local-ranks-filter=0"]
    if config.nnodes == 1 and not config.rdzv_endpoint:
        command.append("--standalone")
    else:
        command += [f"--nnodes={config.nnodes}", f"--node-rank={config.node_rank}", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint={config.rdzv_endpoint}", f"--rdzv-id={run_id}"]
    return command + ["-m", module, *args]


def launch(command: list[str], status_dir: Path, log_file: Path, world_size: int,
           env: dict[str, str] | None = None, echo: Callable[[str], None] | None = None) -> Outcome:
    """Run torchrun to its end and return rank 0's outcome; raise for any other end.

    Raises `RankDied` (one line naming the rank, its exit code and the log) when a rank ended without a status,
    or the error a rank reported (as a TrainpipeError of exit code 2, or its own code, e.g. 143 for preempted)."""
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    status_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(world_size):
        status_path(status_dir, rank).unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        restore, fired = _forward_signals(proc)
        try:
            for line in proc.stdout or ():  # rank 0 to the console, everything to the log
                log.write(line)
                if line.startswith(CONSOLE_PREFIX):
                    echo(line[len(CONSOLE_PREFIX):].rstrip("\n"))
            code = proc.wait()
        finally:
            restore()
            if proc.poll() is None:  # leaving on an error of our own: neither torchrun nor a rank may outlive us
                _stop(proc)
    return _outcome(status_dir, world_size, code, log_file, signalled=bool(fired))


def _stop(proc: subprocess.Popen[str], grace: float = 60.0) -> None:
    """SIGTERM to torchrun (it stops its ranks, each in a session of its own); after `grace` seconds, SIGKILL to
    the ranks and to torchrun."""
    import psutil

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    proc.kill()
    proc.wait()


def _forward_signals(proc: subprocess.Popen[str]) -> tuple[Callable[[], None], list[int]]:
    """SIGTERM/SIGINT to this process → SIGTERM to torchrun (its own session, so a terminal's Ctrl-C reaches the
    ranks once, through it). Returns the function that puts the previous handlers back, and the signals seen."""
    fired: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return (lambda: None), fired
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, forward)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore, fired


def _outcome(status_dir: Path, world_size: int, code: int, log_file: Path, signalled: bool) -> Outcome:
    statuses = {rank: read_status(status_dir, rank) for rank in range(world_size)}
    first = statuses[0]
    if first is not None and first.outcome == "done":
        return first
    silent = [rank for rank, status in statuses.items() if status is None]
    if silent:
        rank, exit_code = _root_cause(log_file, silent)
        how = (f"was killed by {signal.Signals(-exit_code).name}" if exit_code is not None and exit_code < 0
               else f"exited with code {exit_code}" if exit_code is not None else "ended")
        if signalled:  # stopped before the loop could checkpoint (still starting): resumable all the same
            raise Preempted(f"train: stopped by a signal while the training processes started (rank {rank} {how}); "
                            f"log {log_file}", key="train")
        raise RankDied(f"train: training process rank {rank} of {world_size} {how} without finishing (torchrun exit "
                       f"{code}; log {log_file}); continue from the last checkpoint with --resume", key="train")
    reported = [s for s in statuses.values() if s is not None and s.outcome in ("error", "preempted")]
    if reported:
        chosen = min(reported, key=lambda s: (s.outcome != "preempted", s.rank))  # a preemption explains the rest
        raise _as_error(chosen)
    raise RankDied(f"train: rank 0 trained nothing (torchrun exit {code}; log {log_file})", key="train")


def _as_error(status: Outcome) -> TrainpipeError:
    """A rank's reported error, raised here again: the same class when trainpipe.errors has it (Preempted keeps
    its exit code 143 and the run resumable), else a RunError with the rank's line."""
    if status.outcome == "preempted":
        return Preempted(status.message, key=status.key)
    cls = getattr(errors, status.error_type, None)
    if isinstance(cls, type) and issubclass(cls, TrainpipeError):
        return cls(status.message, key=status.key)
    if status.exit_code == 2:  # a TrainpipeError subclass defined elsewhere (TrainingDiverged, CheckpointMismatch)
        return RunError(status.message, key=status.key)
    return RankDied(f"train: training process rank {status.rank} failed: {status.message} (traceback in "
                    f"{status.path})", key="train")


def _root_cause(log_file: Path, silent: list[int]) -> tuple[int, int | None]:
    """The rank torchrun names as the root cause of the failure, and its exit code (negative: a signal)."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return silent[0], None
    part = text.split("Root Cause", 1)[-1]
    found = re.search(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", part, re.DOTALL)
    if found and int(found.group(1)) in silent:
        return int(found.group(1)), int(found.group(2))
    return silent[0], None
