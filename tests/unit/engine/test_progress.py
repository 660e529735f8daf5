"""LiveLine: the one-line progress of boosting rounds and tuning trials, on a real pseudo-terminal."""

import os
import pty
import sys
import threading
import time

from trainpipe.engine.progress import REFRESH_S, LiveLine


class Terminal:
    """stderr replaced by the slave end of a pty; everything written to it is collected from the master end."""

    def __init__(self, monkeypatch):
        self.master, slave = pty.openpty()
        self.file = os.fdopen(slave, "w", encoding="utf-8")
        monkeypatch.setattr(sys, "stderr", self.file)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)  # a full pty buffer would block the writer
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def text(self) -> str:
        self.file.flush()
        time.sleep(0.2)
        return b"".join(self.chunks).decode(errors="replace")


def test_live_line_shows_count_text_and_eta_on_a_terminal_at_most_five_times_a_second(monkeypatch):
    terminal = Terminal(monkeypatch)
    line = LiveLine(True, "xgboost round", 100_000)
    drawn, started = 0, time.perf_counter()
    for done in range(1, 100_001):  # a booster's rounds: the caller asks due() each round
        if line.due():
            line.update(done, f"validation_log_loss {1 / done:.5g}")
            drawn += 1
    elapsed = time.perf_counter() - started
    line.close()
    assert drawn <= elapsed / REFRESH_S + 1
    assert elapsed / 100_000 < 20e-6  # per round: a clock read, not a redraw
    shown = terminal.text()
    assert "xgboost round" in shown and "validation_log_loss" in shown and "eta" in shown


def test_live_line_writes_nothing_off_a_terminal_or_when_disabled(monkeypatch, capfd):
    for line in (LiveLine(True, "tuning trial", 5), LiveLine(False, "tuning trial", 5)):  # stderr: pytest's pipe
        assert not line.due()
        line.update(3, "best roc_auc 0.9")
        line.close()
    assert capfd.readouterr().err == ""
    terminal = Terminal(monkeypatch)
    off = LiveLine(False, "tuning trial", 5)
    off.update(3, "best roc_auc 0.9")
    off.close()
    assert terminal.text() == ""
