"""Progress on stderr: a rich bar with loss and throughput on a terminal, plain lines otherwise (torch epochs);
`LiveLine` for counted work (boosting rounds, tuning trials), shown on a terminal only.

The CLI turns progress off with --json (`StageContext.progress`): then nothing here writes to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress as Bar
    from rich.progress import TaskID

REFRESH_S = 0.2  # at most ~5 updates a second: a per-round or per-batch call then costs a clock read


class Progress:
    """Per-step updates are throttled (~5 per second) so the bar costs nothing measurable per batch."""

    def __init__(self, enabled: bool, epochs: int) -> None:
        self.enabled, self.epochs = enabled, epochs
        self.bar: Bar | None = None
        self.task: TaskID | None = None
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
        if self.bar is None or self.task is None or now - self._last < REFRESH_S:
            return
        self._last = now
        speed = (pos - self._rows_at_start) / max(now - self._started, 1e-9)
        self.bar.update(self.task, completed=pos, loss=loss, speed=speed)

    def end_epoch(self, line: str) -> None:
        if self.bar is not None and self.task is not None:
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


class LiveLine:
    """One transient line on a terminal's stderr for counted work: a bar, done/total, the caller's text (e.g.
    the metric and its best so far), elapsed and remaining time; it disappears when closed, leaving the stage's
    summary line. Disabled, or with stderr not a terminal (a log file), it does nothing: the hundreds of rounds
    of a booster are not worth a line each. `total` None: no bar or ETA (e.g. a time budget)."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self.bar: Bar | None = None
        self.task: TaskID | None = None
        self._last = 0.0
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[text]}"),
                           TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                           console=Console(stderr=True), transient=True, refresh_per_second=4,
                           redirect_stdout=False)  # stdout may be a pipe: it stays what the command prints
            self.task = self.bar.add_task(label, total=total, text="")
            self.bar.start()

    def due(self) -> bool:
        """Whether an update now would be drawn: the line exists and the last one is REFRESH_S old."""
        return self.bar is not None and time.perf_counter() - self._last >= REFRESH_S

    def update(self, done: int, text: str) -> None:
        if self.bar is not None and self.task is not None:
            self._last = time.perf_counter()
            self.bar.update(self.task, completed=done, text=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
