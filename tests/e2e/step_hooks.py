"""A training callback the kill/resume tests put into a real `trainpipe` process through `training.callbacks`.

`PauseAtStep` writes each optimizer step to the file named by $STEP_HOOK_FILE and, at step $STEP_HOOK_PAUSE_AT,
waits until SIGTERM reaches the Trainer (or the process is killed). It only observes and waits, so the run
computes what a run without it computes. Without $STEP_HOOK_FILE it does nothing: the resumed process of a
run keeps the callback (it is in the run's config) but is not paused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REFERENCE = "tests.e2e.step_hooks:PauseAtStep"


class PauseAtStep:
    def __init__(self) -> None:
        self.file = os.environ.get("STEP_HOOK_FILE")
        self.pause_at = int(os.environ.get("STEP_HOOK_PAUSE_AT", "0") or 0)

    def on_step_end(self, trainer) -> None:
        if not self.file:
            return
        Path(self.file).write_text(str(trainer.step))
        while trainer.step == self.pause_at and not trainer.preempt_requested:
            time.sleep(0.02)


def env(step_file: Path | None = None, step: int = 0) -> dict[str, str]:
    """The environment of a `trainpipe` subprocess that can import this module and, given a step file, announces
    its steps there and pauses after optimizer step `step`."""
    repo = str(Path(__file__).resolve().parents[2])
    out = {k: v for k, v in os.environ.items() if not k.startswith("STEP_HOOK_")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    if step_file is not None:
        out.update(STEP_HOOK_FILE=str(step_file), STEP_HOOK_PAUSE_AT=str(step))
    return out
