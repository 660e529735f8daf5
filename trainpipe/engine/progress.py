"""Training progress on stderr: a rich bar with loss and throughput on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """Per-step updates are throttled (~5 per second) so the bar costs nothing measurable per batch."""

    def __init__(self, enabled: bool, epochs: int):
        self.enabled, self.epochs = enabled, epochs
        self.bar = self.task = None
        self._last = 0.0
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("loss {task.fields[loss]:.4g}  {task.fields[speed]:,.0f} rows/s"),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=True)

    def start_epoch(self, epoch: int, rows: int, done: int) -> None:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("train", total=rows, completed=done, epoch=f"{epoch + 1}/{self.epochs}",
                                          loss=float("nan"), speed=0.0)
        self._started, self._rows_at_start = time.perf_counter(), done

    def advance(self, pos: int, loss: float) -> None:
        now = time.perf_counter()
        if self.bar is None or now - self._last < 0.2:
            return
        self._last = now
        speed = (pos - self._rows_at_start) / max(now - self._started, 1e-9)
        self.bar.update(self.task, completed=pos, loss=loss, speed=speed)

    def end_epoch(self, line: str) -> None:
        if self.bar is not None:
            self.bar.remove_task(self.task)
            self.bar.stop()
        self.say(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()

    def say(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
