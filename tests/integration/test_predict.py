"""Batch predict on a run's packaged model (registry off): input checks, checksum, the CLI's exit code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import DataError, RegistryError
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.registry.predict import predict_file
from trainpipe.store import Store


@pytest.fixture
def churn_run(churn_config, store) -> dict:
    config = config_from_dict({**churn_config, "tracking": {"enabled": False}})
    return run_pipeline(config, Store.locate(config.store))


def test_predict_streams_chunks_keeps_the_id_and_matches_evaluate(churn_run, data_dir, store, tmp_path):
    assert churn_run["registered"]["registry"] == "disabled"
    report = predict_file(churn_run["run_id"], str(data_dir / "churn.csv"), str(tmp_path / "p.parquet"),
                          Store.locate(str(store)), chunk_rows=700)  # 3,000 rows: five chunks
    out = pd.read_parquet(tmp_path / "p.parquet")
    assert report["rows"] == len(out) == 3000
    assert list(out.columns) == ["customer_id", "prediction", "proba_No", "proba_Yes"]
    raw = pd.read_csv(data_dir / "churn.csv")
    assert (out["customer_id"] == raw["customer_id"]).all()
    import numpy as np

    with np.load(Path(churn_run["run_dir"]) / "split" / "split.npz") as split:
        test_rows = split["test"]
    evaluated = np.load(Path(churn_run["run_dir"]) / "evaluate" / "test_scores.npy")
    np.testing.assert_allclose(out[["proba_No", "proba_Yes"]].to_numpy()[test_rows], evaluated, rtol=1e-6)


def test_predict_refuses_missing_columns_text_in_numbers_and_a_changed_package(churn_run, data_dir, store, tmp_path, cli_json):
    raw = pd.read_csv(data_dir / "churn.csv")
    raw.drop(columns=["contract"]).to_parquet(tmp_path / "missing.parquet")
    target = Store.locate(str(store))
    with pytest.raises(DataError, match="missing column\\(s\\) 'contract'"):
        predict_file(churn_run["run_id"], str(tmp_path / "missing.parquet"), str(tmp_path / "o.parquet"), target)
    raw.assign(tenure_months=raw["tenure_months"].astype(str) + " months").to_csv(tmp_path / "text.csv", index=False)
    code, doc = cli_json("predict", churn_run["run_id"], str(tmp_path / "text.csv"), "--out",
                         str(tmp_path / "o.parquet"), "--store", str(store))
    assert code == 2 and "'tenure_months' should hold numbers" in doc["error"] and doc["key"] == "column tenure_months"
    assert not (tmp_path / "o.parquet").exists()
    with open(Path(churn_run["run_dir"]) / "register" / "model" / "MLmodel", "a") as handle:
        handle.write("\n# edited\n")
    with pytest.raises(RegistryError, match="changed since registration"):
        predict_file(churn_run["run_id"], str(data_dir / "churn.csv"), str(tmp_path / "o.parquet"), target)


def test_a_failure_after_chunks_were_written_leaves_no_file_and_no_temporary_file(churn_run, data_dir, store, tmp_path):
    """Text in a numeric column only in the last of five chunks: four chunks were already written."""
    raw = pd.read_csv(data_dir / "churn.csv")
    raw["tenure_months"] = raw["tenure_months"].astype(object)
    raw.loc[2900, "tenure_months"] = "unknown"
    raw.to_csv(tmp_path / "late.csv", index=False)
    out = tmp_path / "out" / "p.parquet"
    with pytest.raises(DataError, match="'tenure_months' should hold numbers"):
        predict_file(churn_run["run_id"], str(tmp_path / "late.csv"), str(out), Store.locate(str(store)),
                     chunk_rows=700)
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_datetime_columns_are_features_and_predict_parses_them_from_csv(churn_config, data_dir, store, tmp_path):
    frame = pd.read_csv(data_dir / "churn.csv").head(1500)
    frame["signup"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(frame.index * 7, unit="h")
    frame.to_parquet(tmp_path / "dated.parquet", index=False)
    config = config_from_dict({**churn_config, "tracking": {"enabled": False},
                               "data": {**churn_config["data"], "path": str(tmp_path / "dated.parquet")}})
    summary = run_pipeline(config, Store.locate(config.store))
    features = next(s for s in summary["stages"] if s["name"] == "features")["summary"]
    assert features["datetime"] == 1 and "signup" not in features["dropped"]
    target = Store.locate(str(store))
    predict_file(summary["run_id"], str(tmp_path / "dated.parquet"), str(tmp_path / "a.parquet"), target)
    frame.to_csv(tmp_path / "dated.csv", index=False)  # the dates become text
    predict_file(summary["run_id"], str(tmp_path / "dated.csv"), str(tmp_path / "b.parquet"), target)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))
    frame.assign(signup="soon").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="'signup' should hold dates/times but holds 'soon'"):
        predict_file(summary["run_id"], str(tmp_path / "bad.csv"), str(tmp_path / "c.parquet"), target)


@pytest.mark.parametrize("family, params", [
    ("xgboost", {"n_estimators": 30}),
    ("sklearn", {"max_iter": 30}),
    ("torch_mlp", {"epochs": 2, "hidden_dims": [16]}),
])
def test_every_family_packages_preprocessing_and_model_that_reproduce_evaluate(family, params, churn_config, data_dir,
                                                                              tmp_path):
    config = config_from_dict({**churn_config, "tracking": {"enabled": False},
                               "model": {"type": family, "params": params}})
    summary = run_pipeline(config, Store.locate(config.store))
    predict_file(summary["run_id"], str(data_dir / "churn.csv"), str(tmp_path / "p.parquet"), Store.locate(config.store))
    out = pd.read_parquet(tmp_path / "p.parquet")
    import numpy as np

    with np.load(Path(summary["run_dir"]) / "split" / "split.npz") as split:
        test_rows = split["test"]
    evaluated = np.load(Path(summary["run_dir"]) / "evaluate" / "test_scores.npy")
    np.testing.assert_allclose(out[["proba_No", "proba_Yes"]].to_numpy()[test_rows], evaluated, rtol=1e-5, atol=1e-7)


def test_xgboost_splits_categories_natively_and_the_package_encodes_them_the_same_way(churn_config, data_dir, store,
                                                                                     tmp_path):
    config = config_from_dict({**churn_config, "model": {"type": "xgboost", "params": {"n_estimators": 20}},
                               "tracking": {"enabled": False}})
    run = run_pipeline(config, Store.locate(config.store))
    import json

    import numpy as np
    import xgboost as xgb

    codes = json.loads((Path(run["run_dir"]) / "features" / "features.json").read_text())["categorical_codes"]
    booster = xgb.Booster(model_file=str(Path(run["run_dir"]) / "train" / "model" / "model.ubj"))
    assert codes["native"] and [booster.feature_types[i] for i in codes["columns"]] == ["c"] * len(codes["columns"])
    predict_file(run["run_id"], str(data_dir / "churn.csv"), str(tmp_path / "p.parquet"), Store.locate(str(store)))
    out = pd.read_parquet(tmp_path / "p.parquet")
    with np.load(Path(run["run_dir"]) / "split" / "split.npz") as split:
        test_rows = split["test"]
    evaluated = np.load(Path(run["run_dir"]) / "evaluate" / "test_scores.npy")
    np.testing.assert_allclose(out[["proba_No", "proba_Yes"]].to_numpy()[test_rows], evaluated, rtol=1e-6)


def test_the_wrapped_torch_pyfunc_still_enforces_its_signature_and_labels_rows_by_their_own_index(churn_config, data_dir,
                                                                                                 tmp_path):
    """The path users take: `mlflow.pyfunc.load_model(...).predict(frame)`. A missing column and text in a long
    column are refused by MLflow's schema enforcement; a frame with a shuffled, non-default index gets each row's
    label on its own row (the labels are gathered in Arrow, not as Python strings)."""
    import warnings

    import mlflow.pyfunc
    import numpy as np
    from mlflow.exceptions import MlflowException

    config = config_from_dict({**churn_config, "tracking": {"enabled": False},
                               "model": {"type": "torch_mlp", "params": {"epochs": 1, "hidden_dims": [16]}}})
    summary = run_pipeline(config, Store.locate(config.store))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = mlflow.pyfunc.load_model(str(Path(summary["run_dir"]) / "register" / "model"))
    raw = pd.read_csv(data_dir / "churn.csv").drop(columns=["churn"])
    raw = raw.astype({c: "str" for c in raw.columns if raw[c].dtype == object}).sample(frac=1, random_state=0)
    raw.index = raw.index + 1000
    out = wrapped.predict(raw)
    assert out.index.equals(raw.index)
    expected = np.where(out["proba_Yes"] >= wrapped.unwrap_python_model().meta["threshold"], "Yes", "No")
    assert (out["prediction"].to_numpy(dtype=object) == expected).all()
    # the same column type pandas makes of Python strings (str under pandas 3, object under pandas 2)
    assert out["prediction"].dtype == pd.DataFrame({"p": np.asarray(["No", "Yes"], dtype=object)})["p"].dtype
    with pytest.raises(MlflowException, match="contract"):
        wrapped.predict(raw.drop(columns=["contract"]))
    with pytest.raises(MlflowException, match="tenure_months"):
        wrapped.predict(raw.assign(tenure_months=raw["tenure_months"].astype(str) + " months"))


@pytest.mark.parametrize("folded", [False, True])
def test_torch_predictions_through_the_pyfunc_and_the_file_are_those_of_the_libraries_own_calls(
        churn_config, data_dir, tmp_path, monkeypatch, folded):
    """The fast paths (the float32 matrix built part by part on threads, only the used columns read, text inputs
    read from Parquet as dictionaries) change no bit: every probability equals sklearn's ColumnTransformer.transform
    cast to float32, then the family's predict_proba, on the same rows. With the preprocessor and embeddings folded
    into the first layer (the default, models/tabular_fold.py) they equal it to float32 rounding, with the same
    classes away from the threshold. A column the model does not use is not read from the file."""
    import warnings

    import mlflow.pyfunc
    import numpy as np
    import pyarrow.parquet as pq

    from trainpipe.data import categories
    from trainpipe.models.tabular import TorchMLPFamily
    from trainpipe.registry.predict import chunks

    monkeypatch.setattr(categories, "PARALLEL_ROWS", 1)  # the threaded paths on 3,000 rows
    if not folded:
        monkeypatch.setattr(TorchMLPFamily, "fold_preprocessor", lambda self, preprocessor: None)
    config = config_from_dict({**churn_config, "tracking": {"enabled": False},
                               "model": {"type": "torch_mlp", "params": {"epochs": 1, "hidden_dims": [32, 16]}}})
    summary = run_pipeline(config, Store.locate(config.store))
    package = Path(summary["run_dir"]) / "register" / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = mlflow.pyfunc.load_model(str(package))
    model = wrapped.unwrap_python_model()
    assert (model.folded is not None) == folded
    raw = pd.read_csv(data_dir / "churn.csv").assign(notes="not a feature")
    raw.to_parquet(tmp_path / "in.parquet", index=False)
    frame = pd.read_parquet(tmp_path / "in.parquet")
    inputs = frame[model.meta["input_columns"]]
    matrix = np.ascontiguousarray(model.preprocessor.transform(inputs), dtype=np.float32)
    expected = model.model.predict_proba(matrix)
    through_pyfunc = wrapped.predict(frame.drop(columns=["churn", "notes"]))
    predict_file(summary["run_id"], str(tmp_path / "in.parquet"), str(tmp_path / "p.parquet"), Store.locate(config.store))
    through_file = pd.read_parquet(tmp_path / "p.parquet")
    for got in (through_pyfunc, through_file):
        scores = got[["proba_No", "proba_Yes"]].to_numpy()
        if folded:
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
            clear = np.abs(expected[:, 1] - model.meta["threshold"]) > 1e-6
            expected_labels = np.where(expected[:, 1] >= model.meta["threshold"], "Yes", "No")
            assert (got["prediction"].to_numpy()[clear] == expected_labels[clear]).all()
        else:
            np.testing.assert_array_equal(scores.view(np.uint64), expected.view(np.uint64))
    np.testing.assert_array_equal(through_file[["proba_No", "proba_Yes"]].to_numpy(),
                                  through_pyfunc[["proba_No", "proba_Yes"]].to_numpy())
    read, _ = next(chunks(str(tmp_path / "in.parquet"), model.meta, 10_000))
    assert set(read.columns) == {*model.meta["input_columns"], "customer_id"}
    assert "notes" in pq.read_schema(tmp_path / "in.parquet").names
