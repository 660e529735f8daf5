"""XGBoost and LightGBM trained on a Dask cluster (`training.distributed.dask`), through the libraries' own
Dask interfaces: `xgboost.dask` (DaskQuantileDMatrix + train) and `lightgbm.dask` (DaskLGBMClassifier/Regressor).

Only the fit fans out. What comes back is the same plain Booster a one-process fit makes, so saving,
packaging, evaluate, gate, register and predict do not change and need no Dask (docs/distributed.md).

- The cluster: `local` starts a LocalCluster of worker processes on 127.0.0.1 (no dashboard) for the fit and
  closes it after, also on an error or a signal (the CLI turns SIGTERM into an exception in this thread); an
  address connects to an existing scheduler, which is left running.
- The data: the train stage holds the matrices in memory; their rows are scattered to the workers in one
  chunk per worker (`client.scatter`), so the task graph holds only keys, never the arrays (Dask warns about,
  and ships with every graph, arrays embedded in it), and a remote cluster, whose workers cannot read this
  machine's run folder, gets them the same way.
- Per round, as far as the libraries allow: xgboost all-reduces its evaluation metrics over the workers, so
  early stopping and the per-round history are a one-process fit's (on the whole validation split).
  lightgbm.dask scores each worker's own share of an eval set, and early stopping hangs when one worker stops
  alone (LightGBM issues #4189, #6351, not supported by the library); here every worker gets the whole
  validation split, so all of them score the same rows with the same (synchronised) trees, stop at the same
  round, and the history is the whole split's. Its training-split scores would still be each worker's own
  rows, so LightGBM on Dask refuses `training.train_metrics`. Round callbacks run in the workers: no live round
  bar in this process for either library.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from trainpipe.engine.config import DaskConfig
from trainpipe.errors import ConfigError, MissingDependency, ModelError

EXTRA = "trainpipe[dask]"
KEY = "training.distributed.dask"
DASK_FAMILIES = ("xgboost", "lightgbm")
# How long to wait for a scheduler given by address: it answers in milliseconds when it is up.
CONNECT_TIMEOUT_S = 10


def dask_problems(model_type: str, training: Any) -> list[str]:
    """Config-time checks (no import, no data): the family trains on Dask, the extra is installed, and the
    `training` settings are ones its Dask interface honours. `training` is the `training` section."""
    if training.distributed.dask is None:
        return []
    if model_type not in DASK_FAMILIES:
        return [(f"{KEY}: only {' and '.join(DASK_FAMILIES)} train on Dask; model.type is {model_type!r} "
                 "(torch families scale out with training.distributed.nproc_per_node)")]
    missing = [name for name in ("dask", "distributed") if importlib.util.find_spec(name) is None]
    if missing:
        return [f"{KEY}: training on Dask needs {' and '.join(missing)}, not installed here; pip install '{EXTRA}'"]
    if model_type == "lightgbm" and training.train_metrics:
        return [("training.train_metrics: LightGBM on Dask scores each worker's own training rows only, not the "
                 "whole split; set it to false (validation metrics are the whole split's)")]
    return []


def _import_dask(module: str) -> Any:
    """`module` (distributed, or a family's Dask interface), or one line naming the extra."""
    try:
        importlib.import_module("distributed")
        return importlib.import_module(module)  # xgboost.dask: `import xgboost` alone does not load it
    except ImportError as exc:
        raise MissingDependency(f"{KEY}: training on Dask needs {exc.name or exc}, not installed here; "
                                f"pip install '{EXTRA}'", key=KEY) from exc


def _client_class(distributed: Any) -> Any:
    """dask.distributed's Client, with `who_has` answering in the order the futures were given.

    Dask answers in set order (string hashes are salted per process), and lightgbm.dask ranks its workers in
    that order; distributed LightGBM finds each feature's bins on one rank from that rank's rows, so a rank
    order that changes from run to run changes the model. In the order of the parts, rank i holds chunk i
    (scatter_rows places chunk i on the i-th worker) and the same config, data and seed give the same model."""

    class OrderedClient(distributed.Client):
        def who_has(self, futures: Any = None, **kwargs: Any) -> Any:
            found = super().who_has(futures, **kwargs)
            if futures is None:
                return found
            order = [future.key for future in self.futures_of(futures)]
            return type(found)({key: found[key] for key in order if key in found})

    return OrderedClient


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGTERM/SIGINT arriving while a LocalCluster starts are held, then sent again once it has started.

    A start interrupted half-way leaves a cluster no one holds, which distributed's exit hook then fails to
    close (a traceback after the CLI's one line); a started one is closed by dask_client's `finally`. Only
    Python-level handlers (the CLI's) are swapped: an ignored signal stays ignored, a default one still kills
    (the workers then exit with their parent)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    swapped = {signum: handler for signum, handler in previous.items() if callable(handler)}
    for signum in swapped:
        signal.signal(signum, lambda received, _frame: held.append(received))
    try:
        yield
    finally:
        for signum, handler in swapped.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # the CLI's handler raises Interrupted here, inside dask_client's try


@contextlib.contextmanager
def dask_client(config: DaskConfig) -> Iterator[Any]:
    """A Client on a LocalCluster started here (`local`) or on the scheduler at `config.cluster`; closed after."""
    distributed = _import_dask("distributed")
    client_class = _client_class(distributed)
    if config.cluster == "local":
        cluster = None
        try:
            with _signals_held():
                # Loopback only, no dashboard; Dask's own log lines (a worker's lost heartbeat while the cluster
                # closes on a signal...) would print over the CLI's: its failures reach this process as exceptions.
                cluster = distributed.LocalCluster(
                    n_workers=config.n_workers, threads_per_worker=config.threads_per_worker,
                    memory_limit=config.memory_limit or "auto", processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.CRITICAL)
            with client_class(cluster) as client:
                yield client
        finally:
            if cluster is not None:
                cluster.close()
        return
    _probe(config.cluster)
    try:
        client = client_class(config.cluster, timeout=CONNECT_TIMEOUT_S)
    except (OSError, ValueError, TypeError) as exc:  # refused, timed out (an OSError), or not an address
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{KEY}.cluster: no Dask scheduler answered at {config.cluster!r} within "
                          f"{CONNECT_TIMEOUT_S} s ({reason})", key=f"{KEY}.cluster") from exc
    with client:
        if not client.scheduler_info()["workers"]:
            raise ConfigError(f"{KEY}.cluster: the Dask scheduler at {config.cluster!r} has no workers",
                              key=f"{KEY}.cluster")
        yield client


def _probe(address: str) -> None:
    """A refused TCP connection at once, instead of the Client's retries until its timeout (plain tcp only)."""
    import socket
    from urllib.parse import urlsplit

    if "://" in address and not address.startswith(("tcp://", "tls://")):
        return  # ucx, inproc...: the Client's own connect says what is wrong
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        socket.create_connection((parts.hostname or "", parts.port or 0), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"{KEY}.cluster: no Dask scheduler answers at {address!r} ({exc.strerror or exc})",
                          key=f"{KEY}.cluster") from exc


def _workers(client: Any, rows: int) -> list[str]:
    """The workers that get a chunk of `rows` rows (all of them, or as many as there are rows), in the order
    xgboost.dask ranks them (by its task id, which is made of the worker's name and address): chunk i on rank i,
    whatever ports the workers got, so the order of the all-reduced sums does not change between runs."""
    workers = client.scheduler_info()["workers"]
    ranked = sorted(workers, key=lambda address: f"[xgboost.dask-{workers[address].get('name')}]:{address}")
    return ranked[:max(1, rows)]


def scatter_rows(client: Any, array: np.ndarray, workers: list[str]) -> Any:
    """`array` as a Dask array of one row chunk per worker, chunk i sent to workers[i] (not into the graph)."""
    import dask.array as da

    bounds = np.linspace(0, len(array), len(workers) + 1).astype(int)
    pieces = []
    for worker, start, stop in zip(workers, bounds[:-1], bounds[1:]):
        chunk = np.ascontiguousarray(array[start:stop])
        future = client.scatter(chunk, workers=[worker], hash=False)
        pieces.append(da.from_delayed(future, shape=chunk.shape, dtype=chunk.dtype))
    return da.concatenate(pieces)


def copies_on_every_worker(client: Any, array: np.ndarray, copies: int) -> Any:
    """`copies` chunks that are each the whole `array`, held once by every worker (lightgbm's eval set)."""
    import dask.array as da

    future = client.scatter(np.ascontiguousarray(array), broadcast=True, hash=False)
    one = da.from_delayed(future, shape=array.shape, dtype=array.dtype)
    return da.concatenate([one] * copies)


def fit_xgboost(params: dict[str, Any], rounds: int, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
                y_val: np.ndarray, *, early_stopping_rounds: int | None, train_metrics: bool,
                config: DaskConfig) -> tuple[Any, dict]:
    """xgboost.dask: quantile sketches merged over the workers, histograms and metrics all-reduced.
    `params`: the family's native parameters. Returns the Booster and its per-round evaluation log."""
    dxgb = _import_dask("xgboost.dask")
    import xgboost as xgb

    params = {k: v for k, v in params.items() if k != "nthread"}  # each worker uses its own threads
    callbacks = ([xgb.callback.EarlyStopping(rounds=early_stopping_rounds, data_name="validation", save_best=True)]
                 if early_stopping_rounds else None)
    with dask_client(config) as client:
        workers = _workers(client, len(X))
        dtrain = dxgb.DaskQuantileDMatrix(client, scatter_rows(client, X, workers), scatter_rows(client, y, workers))
        dval = dxgb.DaskQuantileDMatrix(client, scatter_rows(client, X_val, workers),
                                        scatter_rows(client, y_val, workers), ref=dtrain)
        try:
            out = dxgb.train(client, params, dtrain, num_boost_round=rounds,
                             evals=([(dtrain, "train")] if train_metrics else []) + [(dval, "validation")],
                             verbose_eval=False, callbacks=callbacks)
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"model.params: xgboost rejected the parameters: {str(exc).splitlines()[0]}",
                             key="model.params") from exc
    return out["booster"], out["history"]


def fit_lightgbm(params: dict[str, Any], rounds: int, task: str, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
                 y_val: np.ndarray, *, early_stopping_rounds: int | None, config: DaskConfig) -> tuple[Any, dict]:
    """lightgbm.dask, data-parallel over the workers' row chunks; every worker scores the whole validation split
    (see the module docstring), so early stopping ends every worker at the same round. `params`: the family's
    native parameters. Returns the Booster and its per-round evaluation log."""
    lgb_dask = _import_dask("lightgbm.dask")
    import lightgbm as lgb

    # num_threads: lightgbm.dask gives each worker its own; num_class: the classifier counts the labels itself.
    params = {k: v for k, v in params.items() if k not in ("num_threads", "num_class")}
    estimator_class = lgb_dask.DaskLGBMRegressor if task == "regression" else lgb_dask.DaskLGBMClassifier
    callbacks = ([lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)]
                 if early_stopping_rounds else None)
    with dask_client(config) as client:
        workers = _workers(client, len(X))
        estimator = estimator_class(client=client, n_estimators=rounds, **params)
        try:
            with warnings.catch_warnings():  # n_jobs: lightgbm.dask sets each worker's threads itself, as we want
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                estimator.fit(scatter_rows(client, X, workers), scatter_rows(client, y, workers),
                              eval_X=(copies_on_every_worker(client, X_val, len(workers)),),
                              eval_y=(copies_on_every_worker(client, y_val, len(workers)),),
                              eval_names=["validation"], callbacks=callbacks)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"model.params: lightgbm rejected the parameters: {str(exc).splitlines()[0]}",
                             key="model.params") from exc
    return estimator.booster_, estimator.evals_result_
