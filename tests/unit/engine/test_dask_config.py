"""`training.distributed.dask`: which cluster values are accepted when the config loads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainpipe.engine.config import DaskConfig


@pytest.mark.parametrize("address", ["local", "tcp://10.0.0.5:8786", "tls://scheduler.example.com:8786",
                                     "scheduler:8786", "tcp://[::1]:8786"])
def test_local_or_a_scheduler_address_is_accepted(address):
    assert DaskConfig(cluster=address).cluster == address


@pytest.mark.parametrize("address", ["my-laptop", "tcp://10.0.0.5", "http://10.0.0.5:8786/status", ""])
def test_anything_else_is_refused_naming_the_cluster_key(address):
    with pytest.raises(ValidationError, match="cluster: expected `local` or a scheduler address"):
        DaskConfig(cluster=address)


@pytest.mark.parametrize("size", ["4GB", "512MiB", "1.5 GB", "auto", "2000000000"])
def test_memory_limit_takes_dask_sizes(size):
    assert DaskConfig(memory_limit=size).memory_limit == size


def test_local_settings_with_an_existing_cluster_are_refused_not_ignored():
    with pytest.raises(ValidationError, match="threads_per_worker: only for cluster `local`"):
        DaskConfig(cluster="tcp://10.0.0.5:8786", threads_per_worker=4)
