"""validate: check (and for ranking, clean) the ingested rows; every problem in one saved report.

What is checked is the task's (tabular: the schema with pandera, the labels, infinite values; ranking: the
interaction columns, positives, duplicates, minimum counts); a failing check fails the run, with the report
kept in `validate.failed/` as evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainpipe.errors import ValidationFailed
from trainpipe.stages.context import StageContext, StageResult, StageSpec

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def line(s: dict) -> str:
    return f"data checks passed · {s.get('columns_checked')} columns checked · {s.get('warnings')} warning(s)"


def schema_file(config: PipelineConfig) -> list[str]:
    """The contents of `schema.path`: editing the schema re-validates."""
    return [config.schema_.path] if config.schema_.path else []


SPEC = StageSpec("validate", sections=("data", "schema", "task", "ranking"), upstream=("ingest",), line=line,
                 files=schema_file)


def run(ctx: StageContext) -> StageResult:
    checked = ctx.task.validate(ctx)
    report = checked.report
    (ctx.stage_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    if report["errors"]:
        raise failure(report["errors"], checked.schema_columns, ctx.run_dir / "validate.failed" / "report.json")
    out = checked.output
    return StageResult(
        outputs={"report": "report.json", **out.outputs},
        artifacts=["report.json", *out.artifacts],
        metrics={**out.metrics, "data_check_warnings": float(len(checked.warnings))},
        summary={"checks_passed": True, **out.summary, "warnings": len(checked.warnings),
                 "warning_messages": checked.warnings[:5]},
    )


def failure(errors: list[dict], schema_columns: list[str], report_file: Path) -> ValidationFailed:
    """One line (or the first of several) naming the key: the config key, the schema column or the column."""
    lines = [e["message"] for e in errors]
    first = errors[0]
    if first["message"].startswith(("data.", "schema.")):
        key = first["message"].split(":")[0]
    elif first.get("column") in schema_columns:
        key = f"schema.columns.{first['column']}"
    else:
        key = f"column {first.get('column')}" if first.get("column") else "schema"
    head = lines[0] if len(lines) == 1 else f"{len(lines)} data checks failed: {lines[0]}; ..."
    return ValidationFailed(f"{head} (report: {report_file})", key=key, lines=lines)
