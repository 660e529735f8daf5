"""predict_file's read-ahead: same items in the same order, errors in the caller's thread, one item ahead."""

from __future__ import annotations

import threading

import pytest

from trainpipe.errors import DataError
from trainpipe.registry.predict import read_ahead


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))


def test_a_read_error_is_raised_in_the_callers_thread_after_the_items_before_it() -> None:
    def source():
        yield 1
        yield 2
        raise DataError("data.parquet: cannot read it as Parquet: boom", key="data")

    got = []
    with pytest.raises(DataError, match="boom"):
        for item in read_ahead(source()):
            got.append(item)
    assert got == [1, 2]


def test_reading_runs_at_most_one_item_ahead_of_the_caller() -> None:
    produced: list[int] = []
    gate = threading.Event()

    def source():
        for i in range(10):
            produced.append(i)
            yield i

    stream = read_ahead(source())
    assert next(stream) == 0
    gate.wait(0.2)  # give the worker time to run ahead if it would
    assert len(produced) <= 2
    stream.close()
