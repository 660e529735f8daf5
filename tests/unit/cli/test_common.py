"""SIGTERM and SIGINT become `Interrupted` inside a command, and everything is put back afterwards."""

from __future__ import annotations

import os
import signal
import time

import pytest

from trainpipe.cli.common import Interrupted, stop_on_signals


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(1)  # the handler runs at the next bytecode; never reached when it raises


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_inside_a_command_raises_interrupted_with_its_exit_code(signum, code):
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as caught, stop_on_signals():
        deliver(signum)
    assert caught.value.exit_code == code and caught.value.message == f"stopped by {signal.Signals(signum).name}"
    assert isinstance(caught.value, KeyboardInterrupt)  # no `except Exception` in a library swallows it
    assert signal.getsignal(signum) is before


def test_a_second_signal_during_cleanup_stops_the_default_way():
    with pytest.raises(KeyboardInterrupt) as caught, stop_on_signals():
        try:
            deliver(signal.SIGINT)
        except Interrupted:
            deliver(signal.SIGINT)  # Ctrl-C again while the run is being marked killed
    assert type(caught.value) is KeyboardInterrupt  # Python's own handler: not ours any more


def test_a_handler_installed_and_restored_inside_like_the_torch_loops_composes():
    with pytest.raises(Interrupted), stop_on_signals():
        ours = signal.getsignal(signal.SIGTERM)
        old = signal.signal(signal.SIGTERM, lambda *_: None)  # the loop's "checkpoint, then Preempted"
        signal.signal(signal.SIGTERM, old)
        assert signal.getsignal(signal.SIGTERM) is ours
        deliver(signal.SIGTERM)


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup or `trainpipe run ... &`
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
