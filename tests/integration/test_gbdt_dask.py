"""XGBoost and LightGBM on a real Dask LocalCluster (2 worker processes), against the one-process fit.

One cluster serves the module, reached by its scheduler address (the `cluster: tcp://...` path); the
`cluster: local` path (the stage starting and stopping its own cluster) runs end to end in
tests/e2e/test_dask.py. Data: scikit-learn's breast_cancer, split once with a seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score

import distributed  # noqa: F401  the Dask extra (trainpipe[dask]): make setup installs it

from trainpipe.engine.config import DaskConfig, DistributedConfig
from trainpipe.errors import ConfigError
from trainpipe.models import load_family
from trainpipe.models.base import FitContext
from trainpipe.models.gbdt import LightGBMFamily, XGBoostFamily
from trainpipe.models.gbdt_dask import dask_client

# Distributed histograms see the same rows but LightGBM finds its bins per rank from that rank's rows, so its
# trees may differ a little from one process (xgboost's quantile sketch is exact at this size: equal here).
AUC_TOLERANCE = 0.01
PARAMS = {"xgboost": {"n_estimators": 200, "max_depth": 3}, "lightgbm": {"n_estimators": 200, "num_leaves": 8}}
FAMILIES = {"xgboost": XGBoostFamily, "lightgbm": LightGBMFamily}


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=50)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    parts = {"train": order[:340], "validation": order[340:455], "test": order[455:]}
    return {**{f"X_{k}": X[rows].astype(np.float32) for k, rows in parts.items()},
            **{f"y_{k}": y[rows] for k, rows in parts.items()}}


def fit(family: str, data: dict, context: FitContext | None):
    model = FAMILIES[family]("binary", PARAMS[family], 2, 0, 1)
    result = model.fit(data["X_train"], data["y_train"], data["X_validation"], data["y_validation"],
                       early_stopping_rounds=10, context=context)
    return model, result


def on(address: str) -> FitContext:
    return FitContext(distributed=DistributedConfig(dask=DaskConfig(cluster=address)))


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_dask_fit_scores_like_one_process_stops_early_and_its_saved_model_predicts_the_same(family, data, scheduler,
                                                                                         tmp_path):
    single, single_result = fit(family, data, None)
    model, result = fit(family, data, on(scheduler))

    auc = {name: roc_auc_score(data["y_test"], m.predict_proba(data["X_test"])[:, 1])
           for name, m in (("one process", single), ("dask", model))}
    assert abs(auc["dask"] - auc["one process"]) <= AUC_TOLERANCE, auc
    # early stopping on the whole validation split, as in one process: stopped, and the history is per round
    assert result.stopped_early and result.best_iteration is not None, result
    assert len(result.history["validation_log_loss"]) == result.iterations < PARAMS[family]["n_estimators"]
    assert single_result.stopped_early
    if family == "xgboost":  # metrics all-reduced (sums in another order), exact sketch at this size: same rounds
        assert result.best_iteration == single_result.best_iteration and result.iterations == single_result.iterations
        np.testing.assert_allclose(result.history["validation_log_loss"], single_result.history["validation_log_loss"],
                                   rtol=1e-6)

    # The booster is a plain one: saved, loaded without Dask, it predicts exactly what the fitted model did.
    model.save(tmp_path / "model")
    loaded = load_family(tmp_path / "model")
    assert type(loaded) is type(single) and loaded.best_iteration == model.best_iteration
    np.testing.assert_array_equal(loaded.predict_proba(data["X_test"]), model.predict_proba(data["X_test"]))


SAME_MODEL = """
import hashlib, json, sys
import numpy as np
from sklearn.datasets import load_breast_cancer
from trainpipe.engine.config import DaskConfig, DistributedConfig
from trainpipe.models.base import FitContext
from trainpipe.models.gbdt import LightGBMFamily
X, y = load_breast_cancer(return_X_y=True)
X = X.astype(np.float32)
model = LightGBMFamily("binary", {"n_estimators": 60, "num_leaves": 8}, 2, 0, 1)
model.fit(X[:400], y[:400], X[400:], y[400:], early_stopping_rounds=None,
          context=FitContext(distributed=DistributedConfig(dask=DaskConfig(cluster=sys.argv[1]))))
print(json.dumps(hashlib.sha256(model.predict_proba(X).tobytes()).hexdigest()))
"""


@pytest.mark.extended
def test_lightgbm_on_dask_trains_the_same_model_whatever_the_process_hash_seed(scheduler):
    """Dask lists a key's workers in set order, which follows the per-process string hash seed; lightgbm.dask
    ranks its workers in that order and each rank finds some features' bins from its own rows. Without ordering
    the ranks by the data's chunks, seeds 1 and 3 gave two different models on this cluster."""
    digests = []
    for seed in ("1", "3"):
        proc = subprocess.run([sys.executable, "-c", SAME_MODEL, scheduler], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        digests.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1]


def test_a_scheduler_address_where_nothing_listens_is_one_config_error_naming_the_key():
    with pytest.raises(ConfigError) as caught, dask_client(DaskConfig(cluster="tcp://127.0.0.1:9")):
        pass
    assert caught.value.key == "training.distributed.dask.cluster"
    assert "tcp://127.0.0.1:9" in str(caught.value) and "\n" not in str(caught.value)
