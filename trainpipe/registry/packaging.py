"""The packaged model: an MLflow pyfunc that takes the raw input columns and returns predictions.

It bundles the fitted ColumnTransformer, the model family's saved folder and a small meta.json, and
works for any family that follows models/base.py, because it only calls `load_family`, `predict`
and `predict_proba`. It is saved as "models from code" (trainpipe/registry/pyfunc_entry.py), so loading it
never unpickles a Python object other than the preprocessor. A SHA-256 over every packaged file is
recorded at registration and checked before loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

try:  # mlflow is a core dependency, but --help must not import it: this module is imported lazily
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

ENTRY = Path(__file__).with_name("pyfunc_entry.py")
TABULAR_BASE = ("mlflow", "scikit-learn", "pandas", "numpy", "joblib")  # what every tabular package loads


def input_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "long"  # MLflow refuses int64 -> double as unsafe, so integer columns stay integers
    if pd.api.types.is_numeric_dtype(series):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def output_columns(meta: dict) -> list[str]:
    if meta["task"] == "regression":
        return ["prediction"]
    return ["prediction", *(f"proba_{c}" for c in meta["classes"])]


class PackagedModel(PythonModel):
    """Raw rows in, `prediction` (+ `proba_<class>` for classification) out."""

    def load_context(self, context: Any) -> None:
        import joblib

        from trainpipe.models import load_family
        from trainpipe.models.base import frame_predictor

        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.preprocessor = joblib.load(context.artifacts["preprocessor"])
        self.model = load_family(Path(context.artifacts["model"]))
        # folded at load time from the fitted objects (torch_mlp: models/tabular_fold.py); None: transform, then predict
        self.folded = frame_predictor(self.model, self.preprocessor)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Regression values, or (rows, classes) probabilities: what evaluate scores."""
        from trainpipe.data.features import transform
        from trainpipe.data.finite import apply_infinite_policy

        # As in training (data.infinite): infinite numbers are refused naming the column, or made missing.
        inputs = apply_infinite_policy(frame[self.meta["input_columns"]], self.meta.get("infinite", "error"), "input")
        folded = getattr(self, "folded", None)
        scores = folded.scores(inputs) if folded is not None else None
        if scores is not None:
            return np.asarray(scores, dtype=np.float64)
        X = transform(self.preprocessor, inputs)
        if self.meta["task"] == "regression":
            return np.asarray(self.model.predict(X), dtype=np.float64)
        return np.asarray(self.model.predict_proba(X), dtype=np.float64)

    # The DataFrame hint tells MLflow to leave validation to the signature (no hint: a warning per import).
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scores = self.scores(frame)
        if self.meta["task"] == "regression":
            return pd.DataFrame({"prediction": scores}, index=frame.index)
        classes = self.meta["classes"]
        out = {"prediction": class_labels(classes, class_codes(scores, self.meta))}
        for i, label in enumerate(classes):
            out[f"proba_{label}"] = scores[:, i]
        return pd.DataFrame(out, index=frame.index)


def class_codes(scores: np.ndarray, meta: dict) -> np.ndarray:
    """Predicted class positions: the tuned threshold for binary, the most probable class otherwise."""
    if meta["task"] == "binary":
        return (scores[:, 1] >= meta["threshold"]).astype(np.int64)
    return scores.argmax(axis=1)


def class_labels(classes: list, codes: np.ndarray) -> Any:
    """The label of each row's class. Text labels are gathered in Arrow and handed to pandas as they are (its
    string column under pandas 3, object under pandas 2): an object array of a million Python strings costs
    pandas ~50 ms to convert, more than the gather."""
    if classes and all(isinstance(c, str) for c in classes):
        import pyarrow as pa

        return pa.array(classes, type=pa.large_string()).take(pa.array(codes)).to_pandas().array  # no index to align
    return np.asarray(classes, dtype=object)[codes]


def pinned(distributions: tuple[str | tuple[str, ...], ...]) -> list[str]:
    """`name==version` from this environment for each distribution installed here; an entry that is a tuple lists
    alternatives, of which the first installed is pinned (xgboost or xgboost-cpu). Pinned, because MLflow's own
    inference would load the model in a subprocess (seconds)."""
    out = []
    for entry in distributions:
        for name in (entry,) if isinstance(entry, str) else entry:
            try:
                out.append(f"{name}=={metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def requirements(family: str, base: tuple[str, ...]) -> list[str]:
    """A packaged model's pip requirements: `base`, then what the family's class declares, then trainpipe."""
    from trainpipe.models import get_family

    return pinned((*base, *get_family(family).requirements, "trainpipe"))


@contextlib.contextmanager
def pinned_requirements_unchecked() -> Iterator[None]:
    """Skip MLflow's check of a package's requirements against this environment while it is saved.

    Why: `pinned` takes every version from this very environment, so the check cannot find a mismatch, and it is
    the most expensive part of saving a package. MLflow maps every installed distribution's files to modules
    first (`importlib_metadata.packages_distributions`), 0.4-0.7 s on this machine, a third of the register
    stage of a 1M-row xgboost run. MLflow has no switch for it, so its function is replaced for the call; saving
    happens on the stage's thread, and the tracking thread never saves a model."""
    import mlflow.utils.environment as environment

    checked = environment.warn_dependency_requirement_mismatches
    environment.warn_dependency_requirement_mismatches = lambda model_requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = checked


def build_package(target: Path, *, preprocessor: Path, model_dir: Path, meta: dict, example: pd.DataFrame) -> str:
    """Save the pyfunc folder at `target`; returns its SHA-256."""
    import logging

    from mlflow.models import ModelSignature
    from mlflow.pyfunc import save_model
    from mlflow.types import ColSpec, Schema

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Validating input example ..." on every run
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per artifact copied into the package
    work = target.parent / f".{target.name}.parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    inputs = Schema([ColSpec(c["kind"], c["name"], required=True) for c in meta["inputs"]])
    out_kind = "double" if meta["task"] == "regression" else ("string" if any(isinstance(c, str) for c in meta["classes"])
                                                               else "long")
    outputs = Schema([ColSpec(out_kind if name == "prediction" else "double", name) for name in output_columns(meta)])
    example = example.copy()
    for spec in meta["inputs"]:  # the example must match the declared types
        if spec["kind"] == "double":
            example[spec["name"]] = example[spec["name"]].astype("float64")
        elif spec["kind"] == "string":
            example[spec["name"]] = example[spec["name"]].astype(object).where(example[spec["name"]].notna(), None)
    with warnings.catch_warnings(), pinned_requirements_unchecked():
        warnings.simplefilter("ignore")
        save_model(str(target), python_model=str(ENTRY),
                   artifacts={"meta": str(work / "meta.json"), "preprocessor": str(preprocessor), "model": str(model_dir)},
                   signature=ModelSignature(inputs=inputs, outputs=outputs), input_example=example,
                   pip_requirements=requirements(meta["family"], TABULAR_BASE))
    shutil.rmtree(work, ignore_errors=True)
    return tree_sha256(target)


def tree_sha256(folder: Path) -> str:
    """One digest over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
