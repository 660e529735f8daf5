"""Tabular tasks (binary, multiclass, regression): one row per example and a label column.

Rows are checked against the schema and the labels, split by row, turned into a float32 matrix by a
ColumnTransformer fitted on train only, fitted by any family of models/ (the contract suite's fit), scored
with evaluation/metrics.py and packaged as a pyfunc that takes the raw columns (registry/packaging.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import pandas as pd

from trainpipe.data.features import empty_column_warning, empty_columns
from trainpipe.data.finite import describe as describe_infinite
from trainpipe.data.finite import infinite_counts
from trainpipe.data.schema import label_checks, load_schema, validate_frame
from trainpipe.data.split import SPLITS
from trainpipe.errors import ConfigError, DataError
from trainpipe.evaluation.metrics import primary_metric
from trainpipe.tasks.base import (ChampionLineage, ChampionScores, DriftTable, Evaluation, FitPlan, Fitted, Package, RunView,
                                  SplitParts, TaskOutput, Validation)

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.models.base import FitContext


class TabularTask:
    name: ClassVar[str] = "tabular"
    drift_skipped: ClassVar[str | None] = None

    def __init__(self, config: PipelineConfig):
        assert config.data.target is not None, "a tabular task has a label column (checked when the config loads)"
        self.config = config
        self.target: str = config.data.target

    def primary_metric(self) -> tuple[str, str]:
        return primary_metric(self.config.task, self.config.evaluation)

    # -- ingest, validate -----------------------------------------------------------------------
    def check_columns(self, frame: pd.DataFrame) -> None:
        if self.config.data.target not in frame.columns:
            raise DataError(f"data.target: column {self.config.data.target!r} is not in the data "
                            f"(columns: {', '.join(map(str, frame.columns[:12]))})", key="data.target")

    def check_table(self, frame: pd.DataFrame) -> tuple[dict, dict]:
        """Every schema, row-count and label problem of one table, collected into one report (and the schema's
        columns)."""
        config = self.config
        columns = load_schema(config.schema_)
        report = validate_frame(frame, columns, config.schema_)
        if len(frame) < config.schema_.min_rows:
            report["errors"].append({"check": "min_rows", "message": f"schema.min_rows: {len(frame)} rows, fewer than "
                                     f"the {config.schema_.min_rows} required"})
        report["errors"].extend(label_checks(frame[config.data.target], config.task, config.schema_, "data.target"))
        if config.data.infinite == "error":  # `missing`: read_table has already made them NaN
            report["errors"].extend({"column": column, "check": "finite", "count": count,
                                     "message": describe_infinite(column, count, example)}
                                    for column, (count, example) in infinite_counts(frame).items())
        not_features = {config.data.target, config.data.id_column, *config.features.drop}
        report["warnings"].extend({"column": column, "check": "all_missing",
                                   "message": empty_column_warning(column, len(frame))}
                                  for column in empty_columns(frame, [c for c in frame.columns if c not in not_features]))
        report.update(rows=len(frame), columns_checked=len(columns), passed=not report["errors"],
                      status="passed" if not report["errors"] else "failed")
        return report, columns

    def check_data(self, frame: pd.DataFrame) -> dict:
        if self.config.data.target not in frame.columns:
            raise DataError(f"data.target: column {self.config.data.target!r} is not in the data", key="data.target")
        return self.check_table(frame)[0]

    def validate(self, run: RunView) -> Validation:
        from trainpipe.data.schema import SchemaSpec, schema_to_yaml

        report, columns = self.check_table(run.table())
        artifacts = []
        if columns:
            (run.stage_dir / "schema.yaml").write_text(schema_to_yaml(SchemaSpec(columns=columns)))
            artifacts.append("schema.yaml")
        return Validation(report=report, warnings=[w["message"] for w in report["warnings"]],
                          output=TaskOutput(artifacts=artifacts, summary={"columns_checked": len(columns)}),
                          schema_columns=list(columns))

    # -- split, features -------------------------------------------------------------------------
    def split(self, run: RunView) -> SplitParts:
        from trainpipe.data.split import make_split, small_split_warnings

        config, frame = self.config, run.table()
        parts, strategy = make_split(frame, config.split, config.task, self.target, config.seed)
        parts = {name: parts[name].astype(np.int64) for name in SPLITS}
        record: dict[str, Any] = {"strategy": strategy,
                                  "seed": config.split.seed if config.split.seed is not None else config.seed,
                                  "sizes": {name: int(len(parts[name])) for name in SPLITS},
                                  "hash": None}  # filled in by the stage
        labels = frame[config.data.target] if config.task != "regression" else None
        if labels is not None:
            record["class_counts"] = {name: {str(k): int(v) for k, v in
                                             labels.iloc[parts[name]].value_counts(sort=False).items()}
                                      for name in SPLITS}
        record["warnings"] = small_split_warnings(parts, labels)
        if config.data.id_column is not None and config.data.id_column in frame.columns:  # tasks/unseen.py
            from trainpipe.tasks.unseen import write_seen_ids

            seen = np.concatenate([parts["train"], parts["validation"]])
            write_seen_ids(run.stage_dir, config.data.id_column, frame[config.data.id_column].to_numpy()[seen])
        return SplitParts(parts, record, {"strategy": strategy, **record["sizes"], "warning_messages": record["warnings"]})

    def features(self, run: RunView) -> TaskOutput:
        """Fit the ColumnTransformer on train only; save it and the transformed matrices."""
        import joblib

        from trainpipe.data.features import (LabelCoding, build_preprocessor, fit_on_rows, select_columns,
                                             transform_rows)
        from trainpipe.models import get_family

        config, frame, target = self.config, run.table(), self.target
        with np.load(run.upstream("split") / "split.npz") as split:
            parts = {name: split[name] for name in SPLITS}
        exclude = [target] + ([config.data.id_column] if config.data.id_column else [])
        roles = select_columns(frame, config.features, exclude)
        needs = get_family(config.model.type).needs
        preprocessor, resolved = build_preprocessor(roles, config.features, needs.tree_model, needs.handles_missing,
                                                    needs.categorical_codes, needs.native_categoricals)
        fit_on_rows(preprocessor, frame, parts["train"])  # fitted on training rows only

        # One transform of the whole table, then numpy row gathers: cheaper than three DataFrame slices.
        coding = LabelCoding.fit(frame[target], config.task, config.data.positive_class)
        matrices, y = transform_rows(preprocessor, frame, parts), coding.encode(frame[target])
        for name in SPLITS:  # written while the next stage runs (stages/array_writes.py)
            run.save_array(f"X_{name}", matrices[name])
            run.save_array(f"y_{name}", y[parts[name]])
        joblib.dump(preprocessor, run.stage_dir / "preprocessor.joblib")
        names = [str(n) for n in preprocessor.get_feature_names_out()]
        info = {"roles": roles, "resolved": resolved, "feature_names": names, "labels": coding.state_dict(),
                "input_columns": roles["numeric"] + roles["categorical"] + roles["passthrough"] + roles["datetime"]}
        native = resolved["encoding"] == "native"
        if roles["categorical"] and (native or (needs.categorical_codes and resolved["encoding"] == "ordinal")):
            # Which matrix columns hold codes, and how many codes each has (from train: the encoder's fit); NaN
            # (native: unknown or missing) is not a code.
            first = len(roles["numeric"])
            columns = list(range(first, first + len(roles["categorical"])))
            train_codes = matrices["train"][:, columns]
            info["categorical_codes"] = {"columns": columns, "names": roles["categorical"], "native": native,
                                         "cardinalities": [int(max(np.nanmax(train_codes[:, i], initial=-1), -1)) + 1
                                                           for i in range(len(columns))]}
        (run.stage_dir / "features.json").write_text(json.dumps(info, indent=2, default=str))
        return TaskOutput(
            outputs={"preprocessor": "preprocessor.joblib", "info": "features.json"},
            artifacts=["preprocessor.joblib", "features.json"],
            summary={"numeric": len(roles["numeric"]), "categorical": len(roles["categorical"]),
                     "datetime": len(roles["datetime"]),
                     "dropped": roles["dropped"], "empty": roles["empty"], "features_out": len(names), **resolved,
                     "warning_messages": [empty_column_warning(c, len(frame)) for c in roles["empty"]]})

    # -- train, evaluate -------------------------------------------------------------------------
    def n_classes(self, run: RunView) -> int:
        return len(run.read_json("features", "features.json")["labels"]["classes"] or [])

    def fit(self, run: RunView, model: Any, plan: FitPlan, context: FitContext) -> Fitted:
        data = run.arrays("features", ["X_train", "y_train", "X_validation", "y_validation"])
        X, y = data["X_train"], data["y_train"]
        if plan.with_validation:
            X = np.concatenate([X, data["X_validation"]])
            y = np.concatenate([y, data["y_validation"]])
        categorical = run.read_json("features", "features.json").get("categorical_codes")
        started = time.perf_counter()
        result = model.fit(X, y, data["X_validation"], data["y_validation"],
                           early_stopping_rounds=plan.early_stopping_rounds, train_metrics=plan.train_metrics,
                           context=replace(context, categorical=categorical))
        return Fitted(result, time.perf_counter() - started)

    def evaluate(self, run: RunView) -> Evaluation:
        """Metrics on validation and test, curves and confusion matrices, test scores (for the gate: slices and the
        champion score the same rows without predicting again) and latency."""
        from trainpipe.evaluation.metrics import metrics_from_scores, model_scores
        from trainpipe.models import load_family

        config = self.config
        model = load_family(run.upstream("train") / "model")
        labels = run.read_json("features", "features.json")["labels"]
        n_classes = len(labels["classes"] or [])
        data = run.arrays("features", ["X_validation", "y_validation", "X_test", "y_test"])
        metrics, details, scores = {}, {}, {}
        for split in ("validation", "test"):  # each split predicted once; the test scores are saved for the gate
            scores[split] = model_scores(config.task, model, data[f"X_{split}"])
            metrics[split], details[split] = metrics_from_scores(config.task, data[f"y_{split}"], scores[split],
                                                                 n_classes, config.evaluation)
        return self.record_evaluation(run, metrics, details, labels["classes"], scores["test"], model, data["X_test"])

    def record_evaluation(self, run: RunView, metrics: dict, details: dict, classes: list, test_scores: np.ndarray,
                          model: Any, latency_rows: np.ndarray | None, **summary: Any) -> Evaluation:
        """evaluate's files (details, the test scores the gate compares, latency on `latency_rows`) and result;
        shared by the in-memory and streamed tables."""
        from trainpipe.evaluation.metrics import measure_latency

        config = self.config
        name, direction = self.primary_metric()
        (run.stage_dir / "details.json").write_text(json.dumps({"classes": classes, **details}, indent=2))
        np.save(run.stage_dir / "test_scores.npy", test_scores)
        latency = (measure_latency(model, latency_rows, config.task, config.evaluation.latency_batch_rows,
                                   config.evaluation.latency_batches) if latency_rows is not None else {})
        (run.stage_dir / "latency.json").write_text(json.dumps(latency, indent=2))
        flat = {f"{split}_{k}": v for split, values in metrics.items() for k, v in values.items()}
        flat.update(latency)
        return Evaluation(metrics, TaskOutput(
            outputs={"details": "details.json", "test_scores": "test_scores.npy", "latency": "latency.json"},
            artifacts=["details.json", "latency.json"], metrics=flat,
            summary={"primary_metric": name, "direction": direction, **summary,
                     "validation": metrics["validation"].get(name), "test": metrics["test"].get(name)}))

    # -- gate ------------------------------------------------------------------------------------
    def test_size(self, run: RunView) -> tuple[int, str]:
        return len(np.load(run.upstream("features") / "y_test.npy")), "test rows"

    def baseline_checks(self, metrics: dict[str, float]) -> list[dict]:
        return []  # tabular tasks score no baselines (gates.beat_baselines is refused when the config loads)

    def slice_checks(self, run: RunView, decision: dict) -> list[dict]:
        from trainpipe.evaluation import gates as g

        config, slices = self.config, self.config.gates.slices
        if not (slices.columns or slices.numeric):
            return []
        test = self.slice_rows(run, [*slices.columns, *slices.numeric])
        missing = [c for c in [*slices.columns, *slices.numeric] if c not in test.columns]
        if missing:
            raise ConfigError(f"gates.slices: column {missing[0]!r} is not in the data", key="gates.slices")
        y = np.load(run.upstream("features") / "y_test.npy")
        scores = np.load(run.upstream("evaluate") / "test_scores.npy")
        metric = slices.metric or self.primary_metric()[0]
        rows, checks = g.slice_checks(config.task, metric, y, scores, g.slice_masks(test, slices), slices,
                                      config.evaluation.threshold)
        decision["slices"] = rows
        return checks

    def slice_rows(self, run: RunView, columns: list[str]) -> pd.DataFrame:
        """The raw test rows the gate's slices are cut from (a streamed table reads only `columns`)."""
        return run.raw_rows("test")

    def champion_scores(self, run: RunView, package: Path, metric: str,
                        lineage: ChampionLineage) -> tuple[ChampionScores | None, str | None]:
        """The champion scored by its own packaged pyfunc (its own preprocessing) on this run's raw test rows: all
        of them when the split is the champion's, else those it did not train or validate on (tasks/unseen.py)."""
        config = self.config
        test = run.raw_rows("test")
        y = np.load(run.upstream("features") / "y_test.npy")
        challenger = np.load(run.upstream("evaluate") / "test_scores.npy")
        keep, rows = self.compared_rows(run, lineage, len(y), lambda: test[config.data.id_column])
        if keep is not None:
            test, y, challenger = test[keep], y[keep], challenger[keep]
        if not len(test):  # nothing left to score: the gate says why (rows["compared"] is 0)
            return ChampionScores(y=y, challenger=challenger, champion=challenger.copy(), rows=rows), None
        classes = run.read_json("features", "features.json")["labels"]["classes"]
        old, problem = champion_scores(package, test[[c for c in test.columns if c != config.data.target]],
                                       config.task, classes)
        if old is None:
            return None, problem
        return ChampionScores(y=y, challenger=challenger, champion=old, rows=rows), None

    def compared_rows(self, run: RunView, lineage: ChampionLineage, size: int,
                      test_ids: Callable[[], pd.Series]) -> tuple[np.ndarray | None, dict]:
        """(mask of the test rows to compare on, or None: all; the decision's record of them)."""
        from trainpipe.tasks.unseen import rows_record, same_split, unseen_test_rows

        if same_split(run, lineage):  # the common case: nothing more to read
            return None, rows_record(size, None, "same split", f"the split of champion v{lineage.version}'s run")
        return unseen_test_rows(run, lineage, self.config.data.id_column, test_ids)

    # -- register --------------------------------------------------------------------------------
    def package_inputs(self, run: RunView) -> tuple[pd.DataFrame, pd.DataFrame]:
        """register: a frame with the input columns' dtypes, and test rows for the package's input example."""
        return run.table(), run.raw_rows("test")

    def package(self, run: RunView, target: Path) -> Package:
        from trainpipe.evaluation.bootstrap import metric_cis
        from trainpipe.registry.packaging import build_package, input_kind

        config = self.config
        info = run.read_json("features", "features.json")
        frame, test = self.package_inputs(run)
        columns = info["input_columns"]
        meta = {"task": config.task, "classes": info["labels"]["classes"], "threshold": config.evaluation.threshold,
                "input_columns": columns, "inputs": [{"name": c, "kind": input_kind(frame[c])} for c in columns],
                "family": config.model.type, "id_column": config.data.id_column, "target": config.data.target,
                "trainpipe_run_id": run.run_id, "infinite": config.data.infinite}
        sha = build_package(target, preprocessor=run.upstream("features") / "preprocessor.joblib",
                            model_dir=run.upstream("train") / "model", meta=meta, example=test[columns].head(5))
        y = np.load(run.upstream("features") / "y_test.npy")
        scores = np.load(run.upstream("evaluate") / "test_scores.npy")
        metrics = run.read_json("evaluate", "metrics.json")
        began = time.perf_counter()
        cis = metric_cis(config.task, list(metrics.get("test", {})), y, scores, seed=config.seed,
                         threshold=config.evaluation.threshold)
        seconds = round(time.perf_counter() - began, 3)  # in the stage summary: benchmarks/bench_skeleton.py reports it
        return Package(sha=sha, card_metrics=metrics, cis=cis, interval_seconds=seconds)

    def drift_table(self, run: RunView, split: str | None) -> DriftTable | None:
        """The raw columns (without the id column and dropped columns) and the label, of the rows `drift.max_rows`
        samples (data/drift.py sample_positions: the rows a streamed table gives too), taken from the table
        without copying a whole split first."""
        from trainpipe.data.drift import sample_positions, sample_rows

        config = self.config
        if split is None:
            return self._drift_table(sample_rows(run.table(), config.drift.max_rows, config.seed))
        rows = int(run.read_json("split", "split.json")["sizes"][split])
        return self._drift_table(run.raw_rows(split, sample_positions(rows, config.drift.max_rows, config.seed)))

    def _drift_table(self, frame: pd.DataFrame) -> DriftTable:
        config = self.config
        skip = {config.data.id_column, *config.features.drop}
        columns = [c for c in frame.columns if c not in skip]
        coded = config.features.categorical.columns
        return DriftTable(frame[columns], self.target, "numeric" if config.task == "regression" else "categorical",
                          [] if coded == "auto" else [c for c in coded if c in columns])


def champion_scores(path: Path, frame: pd.DataFrame, task: str, classes: list | None) -> tuple[np.ndarray | None,
                                                                                                str | None]:
    """The champion's scores through the public pyfunc interface, aligned with this run's classes."""
    import warnings

    import mlflow.pyfunc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:  # intact files that this environment cannot load (e.g. a missing library)
        return None, f"the champion cannot be loaded: {str(exc).strip().splitlines()[0][:300]}"
    return score_with_champion(model, frame, task, classes)


def score_with_champion(model: Any, frame: pd.DataFrame, task: str, classes: list | None) -> tuple[np.ndarray | None,
                                                                                                  str | None]:
    """A loaded champion pyfunc's scores on raw rows (a streamed table calls it per batch)."""
    wanted_inputs = model.metadata.get_input_schema().input_names()
    missing = [c for c in wanted_inputs if c not in frame.columns]
    if missing:
        return None, f"the champion needs column(s) {', '.join(map(repr, missing))} that this data lacks"
    try:
        out = model.predict(frame[wanted_inputs])
    except Exception as exc:  # e.g. a column whose type changed since the champion was trained
        return None, f"the champion cannot score this run's test rows: {str(exc).strip().splitlines()[0][:300]}"
    if task == "regression":
        return np.asarray(out["prediction"], dtype=np.float64), None
    wanted = [f"proba_{c}" for c in classes or []]
    missing = [c for c in wanted if c not in out.columns]
    if missing:
        return None, f"the champion predicts other classes than this run ({', '.join(missing)} missing)"
    return out[wanted].to_numpy(dtype=np.float64), None
