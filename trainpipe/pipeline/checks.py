"""The data checks (schema + labels) shared by the validate stage and `trainpipe validate`."""

from __future__ import annotations

import pandas as pd

from trainpipe.data.features import empty_column_warning, empty_columns
from trainpipe.data.finite import describe as describe_infinite
from trainpipe.data.finite import infinite_counts
from trainpipe.data.io import read_table
from trainpipe.data.schema import ColumnSpec, label_checks, load_schema, validate_frame
from trainpipe.errors import DataError


def check_table(frame: pd.DataFrame, config) -> tuple[dict, dict[str, ColumnSpec]]:
    """Every schema, row-count and label problem of one table, collected into one report."""
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
    report["warnings"].extend({"column": column, "check": "all_missing", "message": empty_column_warning(column, len(frame))}
                              for column in empty_columns(frame, [c for c in frame.columns if c not in not_features]))
    report.update(rows=len(frame), columns_checked=len(columns), passed=not report["errors"],
                  status="passed" if not report["errors"] else "failed")
    return report, columns


def check_config_and_data(config) -> dict:
    """`trainpipe validate`: the config and the data checked without a run folder or MLflow run."""
    from trainpipe.pipeline.run import preflight

    preflight(config)
    frame, files = read_table(config.data)
    if len(frame) == 0:
        raise DataError(f"data.path: the dataset is empty (0 rows in {', '.join(files[:3])})", key="data.path")
    if config.task == "ranking":  # the interactions checks and cleaning counts validate would report
        from trainpipe.data.interactions import prepare

        _, report = prepare(frame, config.ranking)
        return {**report, "files": files, "errors": [], "warnings": [{"message": w} for w in report["warnings"]],
                "passed": True, "status": "passed", "columns_checked": 0}
    if config.data.target not in frame.columns:
        raise DataError(f"data.target: column {config.data.target!r} is not in the data", key="data.target")
    report, _ = check_table(frame, config)
    report["files"] = files
    return report
