"""Tabular tasks on a table larger than memory (`data.streaming`, docs/distributed.md).

The same checks, split, features, fit and scores as `TabularTask`, computed over Parquet batches of the source and
of the features matrices instead of one frame. Ingest decides once per run whether the table streams and
records it (`stages/ingest_stream.py`); every method here follows that record and hands a table that ingest
loaded whole to `TabularTask` unchanged, so `data.streaming: auto` on a small table is today's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trainpipe.data.split import MIN_CLASS_ROWS, MIN_SPLIT_ROWS, SPLITS
from trainpipe.data.stream_features import MatrixFile
from trainpipe.data.stream_read import ParquetSource, streaming_blockers
from trainpipe.data.stream_split import assign, batch_keys
from trainpipe.errors import ModelError, SplitError
from trainpipe.tasks.base import (ChampionLineage, ChampionScores, DriftTable, Evaluation, FitPlan, Fitted, RunView,
                                  SplitParts, TaskOutput, Validation)
from trainpipe.tasks.tabular import TabularTask
from trainpipe.tasks.unseen import write_seen_ids

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.models.base import FitContext


def blockers(config: PipelineConfig) -> list[str]:
    """What in the config needs the table in memory (data.streaming: on refuses them; auto then stays in memory)."""
    from trainpipe.models import can_stream

    return streaming_blockers(config.task, can_stream(config.model.type), config.model.type, config.tuning.enabled,
                              config.split.strategy, config.drift.max_rows)


class StreamedTabularTask(TabularTask):
    """TabularTask when `data.streaming` is on or auto; streams whenever ingest streamed."""

    def streams(self, run: RunView) -> bool:
        return bool(run.manifest("ingest").get("outputs", {}).get("streaming"))

    def source(self) -> ParquetSource:
        return ParquetSource(self.config.data)

    def _split_key(self) -> str | None:
        """What a row's part is hashed from: its group, its id, or (None) its position."""
        split = self.config.split
        return split.group_column if split.strategy == "group" else self.config.data.id_column

    def _parts(self, offset: int, frame: pd.DataFrame) -> np.ndarray:
        split, config = self.config.split, self.config
        seed = split.seed if split.seed is not None else config.seed
        return assign(batch_keys(offset, frame, self._split_key()), seed, split.validation, split.test)

    # -- validate --------------------------------------------------------------------------------
    def validate(self, run: RunView) -> Validation:
        if not self.streams(run):
            return super().validate(run)
        from trainpipe.data.schema import SchemaSpec, load_schema, schema_to_yaml
        from trainpipe.data.stream_validate import StreamChecks

        config = self.config
        columns = load_schema(config.schema_)
        checks = StreamChecks(columns, config.schema_, self.target, config.task, config.data.infinite == "error")
        for _, frame in self.source().frames():
            checks.update(frame)
        report = checks.report({self.target, *config.features.drop, *([config.data.id_column] if config.data.id_column else [])})
        artifacts = []
        if columns:
            (run.stage_dir / "schema.yaml").write_text(schema_to_yaml(SchemaSpec(columns=columns)))
            artifacts.append("schema.yaml")
        return Validation(report=report, warnings=[w["message"] for w in report["warnings"]],
                          output=TaskOutput(artifacts=artifacts, summary={"columns_checked": len(columns),
                                                                          "streamed": True}),
                          schema_columns=list(columns))

    # -- split -----------------------------------------------------------------------------------
    def split(self, run: RunView) -> SplitParts:
        if not self.streams(run):
            return super().split(run)
        config, source, key = self.config, self.source(), self._split_key()
        if key is not None and key not in source.columns:
            raise SplitError(f"split.group_column: column {key!r} is not in the data", key="split.group_column")
        if source.rows < 10:
            raise SplitError(f"split: {source.rows} rows are too few to split into train/validation/test", key="split")
        classify = config.task != "regression"
        positions: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
        counts = {name: pd.Series(dtype=np.int64) for name in SPLITS}
        id_column = config.data.id_column if config.data.id_column in source.columns else None
        seen_ids: list[np.ndarray] = []  # tasks/unseen.py: the training and validation id values
        read = list(dict.fromkeys([self.target, *(c for c in (key, id_column) if c)]))
        for offset, frame in source.frames(columns=read):
            assigned = self._parts(offset, frame)
            if id_column is not None:
                seen_ids.append(frame[id_column].to_numpy()[assigned < 2])
            for i, name in enumerate(SPLITS):
                rows = np.flatnonzero(assigned == i)
                positions[name].append(rows + offset)
                if classify:
                    counts[name] = counts[name].add(frame[self.target].iloc[rows].value_counts(), fill_value=0)
        parts = {name: np.concatenate(positions[name]).astype(np.int64) for name in SPLITS}
        for name in SPLITS:
            if len(parts[name]) == 0:
                raise SplitError(f"split.{'test' if name == 'test' else 'validation'}: the {name} split is empty",
                                 key=f"split.{name}")
        if classify:
            _check_class_coverage(self.target, {n: c.astype(np.int64) for n, c in counts.items()})
        strategy = "group (hashed)" if config.split.strategy == "group" else "hash"
        record: dict[str, Any] = {"strategy": strategy, "streamed": True, "key": key or "row position",
                                  "seed": config.split.seed if config.split.seed is not None else config.seed,
                                  "sizes": {name: int(len(parts[name])) for name in SPLITS}, "hash": None}
        if classify:
            record["class_counts"] = {name: {str(k): int(v) for k, v in counts[name].items()} for name in SPLITS}
        record["warnings"] = _small_split_warnings(record["sizes"], counts if classify else None)
        if id_column is not None:
            write_seen_ids(run.stage_dir, id_column, np.concatenate(seen_ids))
        return SplitParts(parts, record, {"strategy": strategy, **record["sizes"], "warning_messages": record["warnings"]})

    # -- features --------------------------------------------------------------------------------
    def features(self, run: RunView) -> TaskOutput:
        """Preprocessing fitted on a seeded sample of training rows, then every batch transformed and appended to
        one Parquet matrix per split (data/stream_features.py)."""
        if not self.streams(run):
            return super().features(run)
        import joblib

        from trainpipe.data.features import LabelCoding, build_preprocessor, select_columns, transform
        from trainpipe.data.stream_features import MatrixWriter, label_classes, sample_mask
        from trainpipe.models import get_family

        config, target, source = self.config, self.target, self.source()
        train_share = 1.0 - config.split.validation - config.split.test
        rate = min(1.0, config.data.stream_fit_rows / max(source.rows * train_share, 1.0))
        samples, labels = [], []
        for offset, frame in source.frames():  # pass 1: the fitting sample and every label
            chosen = (self._parts(offset, frame) == 0) & sample_mask(offset, len(frame), config.seed, rate)
            samples.append(frame[chosen])
            if config.task != "regression":
                labels.append(pd.Series(frame[target].dropna().unique()))
        sample = pd.concat(samples, ignore_index=True)
        exclude = [target] + ([config.data.id_column] if config.data.id_column else [])
        roles = select_columns(sample, config.features, exclude)
        needs = get_family(config.model.type).needs
        preprocessor, resolved = build_preprocessor(roles, config.features, needs.tree_model, needs.handles_missing,
                                                    needs.categorical_codes)
        preprocessor.fit(sample)
        coding = LabelCoding.fit(label_classes(labels) if labels else sample[target], config.task,
                                 config.data.positive_class)
        names = [str(n) for n in preprocessor.get_feature_names_out()]
        codes = (list(range(len(roles["numeric"]), len(roles["numeric"]) + len(roles["categorical"])))
                 if needs.categorical_codes and resolved["encoding"] == "ordinal" and roles["categorical"] else [])
        code_max = np.full(len(codes), -1.0)
        label_dtype = np.float64 if config.task == "regression" else np.int64
        writers = {name: MatrixWriter(run.stage_dir / f"matrix_{name}.parquet", len(names), label_dtype,
                                      config.data.stream_batch_rows) for name in SPLITS}
        for offset, frame in source.frames():  # pass 2: transform and write, batch by batch
            parts, X, y = self._parts(offset, frame), transform(preprocessor, frame), coding.encode(frame[target])
            for i, name in enumerate(SPLITS):
                rows = parts == i
                writers[name].append(X[rows], y[rows])
            if codes and (parts == 0).any():
                code_max = np.maximum(code_max, X[parts == 0][:, codes].max(axis=0))
        matrices = {name: writers[name].close() for name in SPLITS}
        for name in SPLITS:  # read back from the matrix, one split at a time, rather than held for all during the pass
            np.save(run.stage_dir / f"y_{name}.npy", matrices[name].labels().astype(label_dtype))
        joblib.dump(preprocessor, run.stage_dir / "preprocessor.joblib")
        info: dict[str, Any] = {
            "roles": roles, "resolved": resolved, "feature_names": names, "labels": coding.state_dict(),
            "input_columns": roles["numeric"] + roles["categorical"] + roles["passthrough"] + roles["datetime"],
            "streamed": True, "fit_rows": len(sample), "n_features": len(names),
            "matrices": {name: {"file": m.path.name, "rows": m.rows} for name, m in matrices.items()}}
        if codes:
            info["categorical_codes"] = {"columns": codes, "names": roles["categorical"],
                                         "cardinalities": [int(max(m, -1)) + 1 for m in code_max]}
        (run.stage_dir / "features.json").write_text(json.dumps(info, indent=2, default=str))
        files = [f"matrix_{name}.parquet" for name in SPLITS]
        return TaskOutput(
            outputs={"preprocessor": "preprocessor.joblib", "info": "features.json", "matrices": files},
            artifacts=["preprocessor.joblib", "features.json"], metrics={"features_fit_rows": float(len(sample))},
            summary={"numeric": len(roles["numeric"]), "categorical": len(roles["categorical"]),
                     "datetime": len(roles["datetime"]), "dropped": roles["dropped"], "empty": roles["empty"],
                     "features_out": len(names), **resolved, "streamed": True, "fit_rows": len(sample),
                     "warning_messages": [f"column {c!r} has no value in the {len(sample):,} sampled training rows: "
                                          "dropped from the features" for c in roles["empty"]]})

    def matrix(self, run: RunView, split: str) -> MatrixFile:
        info = run.read_json("features", "features.json")
        entry = info["matrices"][split]
        return MatrixFile(run.upstream("features") / entry["file"], int(info["n_features"]), int(entry["rows"]))

    # -- train, evaluate -------------------------------------------------------------------------
    def fit(self, run: RunView, model: Any, plan: FitPlan, context: FitContext) -> Fitted:
        if not self.streams(run):
            return super().fit(run, model, plan, context)
        fit_stream = getattr(model, "fit_stream", None)
        if fit_stream is None or plan.with_validation:  # refused when the config loads; kept for plugin families
            raise ModelError(f"model.type: {self.config.model.type} needs the table in memory; xgboost and torch_mlp "
                             "train from streamed batches (or set data.streaming: off)", key="model.type")
        categorical = run.read_json("features", "features.json").get("categorical_codes")
        started = time.perf_counter()
        result = fit_stream(self.matrix(run, "train"), self.matrix(run, "validation"),
                            early_stopping_rounds=plan.early_stopping_rounds, train_metrics=plan.train_metrics,
                            context=replace(context, categorical=categorical))
        return Fitted(result, time.perf_counter() - started, summary={"streamed": True})

    def _scores(self, model: Any, matrix: MatrixFile) -> np.ndarray:
        """Predictions one row group at a time (regression values or class probabilities)."""
        predict = model.predict if self.config.task == "regression" else model.predict_proba
        parts = [np.asarray(predict(X)) for X, _ in matrix.chunks()]
        return np.concatenate(parts) if parts else np.empty(0)

    def evaluate(self, run: RunView) -> Evaluation:
        if not self.streams(run):
            return super().evaluate(run)
        from trainpipe.evaluation.metrics import metrics_from_scores
        from trainpipe.models import load_family

        config = self.config
        model = load_family(run.upstream("train") / "model")
        labels = run.read_json("features", "features.json")["labels"]
        n_classes = len(labels["classes"] or [])
        metrics, details, scores = {}, {}, {}
        for split in ("validation", "test"):
            scores[split] = self._scores(model, self.matrix(run, split))
            y = np.load(run.upstream("features") / f"y_{split}.npy")
            metrics[split], details[split] = metrics_from_scores(config.task, y, scores[split], n_classes,
                                                                 config.evaluation)
        first = next(self.matrix(run, "test").chunks(), None)  # latency on the first test chunk
        return self.record_evaluation(run, metrics, details, labels["classes"], scores["test"], model,
                                      first[0] if first is not None else None, streamed=True)

    # -- gate, register --------------------------------------------------------------------------
    def _split_frames(self, split: str, columns: list[str] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        """The raw rows of one split, batch by batch (only `columns` when given): (position of the batch's first row
        among that split's rows, the rows), the order `run.raw_rows(split)` has in memory."""
        key, part, position = self._split_key(), SPLITS.index(split), 0
        wanted = None if columns is None else list(dict.fromkeys([*columns, *([key] if key else [])]))
        for offset, frame in self.source().frames(columns=wanted):
            rows = frame[self._parts(offset, frame) == part]
            yield position, rows if columns is None else rows[[c for c in columns if c in rows.columns]]
            position += len(rows)

    def _test_frames(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        return (rows for _, rows in self._split_frames("test", columns))

    # -- drift -----------------------------------------------------------------------------------
    def drift_table(self, run: RunView, split: str | None) -> DriftTable | None:
        """The rows `drift.max_rows` samples from the whole table (split None: the drift stage) or one split (register's
        reference), taken batch by batch: the same seeded rows as in memory (data/drift.py sample_positions), never
        the table (`drift.max_rows: null`, every row, is refused with streaming: data/stream_read.py)."""
        if not self.streams(run):
            return super().drift_table(run, split)
        from trainpipe.data.drift import sample_positions
        from trainpipe.data.stream_read import rows_at

        config, source = self.config, self.source()
        skip = {config.data.id_column, *config.features.drop}
        columns = [c for c in source.columns if c not in skip]
        if split is None:
            rows, batches = source.rows, source.frames(columns=columns)
        else:
            rows = int(run.read_json("split", "split.json")["sizes"][split])
            batches = self._split_frames(split, columns)
        return self._drift_table(rows_at(batches, sample_positions(rows, config.drift.max_rows, config.seed)))

    def slice_rows(self, run: RunView, columns: list[str]) -> pd.DataFrame:
        if not self.streams(run):
            return super().slice_rows(run, columns)
        known = set(self.source().columns)
        return pd.concat(list(self._test_frames([c for c in columns if c in known])), ignore_index=True)

    def champion_scores(self, run: RunView, package: Path, metric: str,
                        lineage: ChampionLineage) -> tuple[ChampionScores | None, str | None]:
        """The champion's own pyfunc on this run's raw test rows, one batch at a time (the rows it did not train or
        validate on, when the split is not the champion's: tasks/unseen.py)."""
        if not self.streams(run):
            return super().champion_scores(run, package, metric, lineage)
        import warnings

        import mlflow.pyfunc

        from trainpipe.tasks.tabular import score_with_champion

        config = self.config
        y = np.load(run.upstream("features") / "y_test.npy")
        challenger = np.load(run.upstream("evaluate") / "test_scores.npy")
        id_column = config.data.id_column
        keep, rows = self.compared_rows(run, lineage, len(y), lambda: pd.concat(
            [t[id_column] for t in self._test_frames([id_column])], ignore_index=True) if id_column else pd.Series())
        if keep is not None:
            y, challenger = y[keep], challenger[keep]
        if not len(y):  # nothing left to score: the gate says why (rows["compared"] is 0)
            return ChampionScores(y=y, challenger=challenger, champion=challenger.copy(), rows=rows), None
        classes = run.read_json("features", "features.json")["labels"]["classes"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = mlflow.pyfunc.load_model(str(package))
        except Exception as exc:  # intact files that this environment cannot load (e.g. a missing library)
            return None, f"the champion cannot be loaded: {str(exc).strip().splitlines()[0][:300]}"
        parts, seen = [], 0
        for test in self._test_frames():
            if keep is not None:  # the batches come in split.npz's test order
                test, seen = test[keep[seen:seen + len(test)]], seen + len(test)
            if len(test):
                old, problem = score_with_champion(model, test.drop(columns=[config.data.target]), config.task, classes)
                if old is None:
                    return None, problem
                parts.append(old)
        return ChampionScores(y=y, challenger=challenger, champion=np.concatenate(parts), rows=rows), None

    def package_inputs(self, run: RunView) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not self.streams(run):
            return super().package_inputs(run)
        example = next((t for t in self._test_frames() if len(t)), None)
        source = self.source()
        return source.empty_frame(), example.head(5) if example is not None else source.empty_frame()


def _check_class_coverage(target: str, counts: dict[str, pd.Series]) -> None:
    """Every class seen in training is also in validation and test (a hashed split cannot move rows to make it so)."""
    train = set(counts["train"].index[counts["train"] > 0])
    for name in ("validation", "test"):
        missing = sorted(map(str, train - set(counts[name].index[counts[name] > 0])))
        if missing:
            raise SplitError(f"split.{name}: class(es) {', '.join(map(repr, missing[:5]))} of {target!r} are absent "
                             f"from the {name} split (streamed rows are assigned by a seeded hash); add rows of them "
                             f"or set data.streaming: off", key=f"split.{name}")


def _small_split_warnings(sizes: dict[str, int], counts: dict[str, pd.Series] | None) -> list[str]:
    """data.split.small_split_warnings from counts: evaluation parts too small for their metrics to mean much."""
    warnings = []
    for name in ("validation", "test"):
        if sizes[name] < MIN_SPLIT_ROWS:
            warnings.append(f"split.{name}: the {name} split has only {sizes[name]} row(s); metrics on fewer than "
                            f"{MIN_SPLIT_ROWS} rows are too noisy to judge or compare models (add rows or raise "
                            f"split.{name})")
        if counts is not None:
            small = counts[name][counts[name] < MIN_CLASS_ROWS]
            if len(small):
                shown = ", ".join(f"{str(k)!r} ({int(v)})" for k, v in small.sort_values().head(5).items())
                warnings.append(f"split.{name}: class(es) {shown} have fewer than {MIN_CLASS_ROWS} rows in the "
                                f"{name} split; metrics for them (recall, AUC) rest on a handful of rows")
    return warnings
