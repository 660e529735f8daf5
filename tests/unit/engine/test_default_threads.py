"""training.threads unset: OMP_NUM_THREADS when set (a container's or CI's share of the machine), else every core."""

import os

from trainpipe.engine.config import default_threads


def test_omp_num_threads_is_the_default_and_tune_workers_share_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert (default_threads(), default_threads(2), default_threads(4), default_threads(12)) == (6, 3, 1, 1)


def test_without_a_usable_omp_num_threads_every_core_is_used(monkeypatch):
    for value in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert default_threads() == (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads(2) == max(1, (os.cpu_count() or 1) // 2)
