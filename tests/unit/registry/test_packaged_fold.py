"""The packaged model predicts torch_mlp through the folded predictor when it folds, and through the matrix
otherwise, with the same output columns either way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.features import transform
from trainpipe.registry.packaging import PackagedModel

pytest.importorskip("torch")

from tests.unit.models.test_tabular_fold import churn_like, trained  # noqa: E402


def packaged(pre, model) -> PackagedModel:
    """What load_context sets, from the fitted objects (no MLflow folder needed for scores/predict)."""
    from trainpipe.models.base import frame_predictor

    packaged = PackagedModel()
    packaged.meta = {"task": "binary", "classes": ["No", "Yes"], "threshold": 0.5, "infinite": "error",
                     "input_columns": ["tenure", "charges", "plan", "senior", "region"]}
    packaged.preprocessor, packaged.model = pre, model
    packaged.folded = frame_predictor(model, pre)
    return packaged


def test_the_package_predicts_through_the_fold_with_todays_columns_and_classes():
    pre, model = trained(churn_like(600, 0), "y", "binary")
    package = packaged(pre, model)
    assert package.folded is not None
    new = churn_like(400, 1).drop(columns="y")
    got = package.predict(None, new)
    package.folded = None
    expected = package.predict(None, new)
    assert list(got.columns) == list(expected.columns) == ["prediction", "proba_No", "proba_Yes"]
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got[["proba_No", "proba_Yes"]], expected[["proba_No", "proba_Yes"]], rtol=1e-5, atol=1e-6)
    clear = (expected["proba_Yes"] - 0.5).abs() > 1e-6
    assert (got["prediction"][clear] == expected["prediction"][clear]).all()


def test_a_frame_the_fold_declines_is_predicted_through_the_matrix_bitwise_as_before():
    pre, model = trained(churn_like(600, 0), "y", "binary")
    package = packaged(pre, model)
    new = churn_like(100, 1).drop(columns="y").astype({"tenure": "float32", "charges": "float32"})  # float32 arithmetic
    assert package.folded is not None and package.folded.scores(new) is None
    np.testing.assert_array_equal(package.scores(new), model.predict_proba(transform(pre, new)))
