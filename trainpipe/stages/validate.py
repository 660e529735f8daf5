"""validate: the schema (pandera) and label checks; every failure in one saved report."""

from __future__ import annotations

import json

from trainpipe.pipeline.checks import check_table
from trainpipe.data.schema import SchemaSpec, schema_to_yaml
from trainpipe.errors import ValidationFailed
from trainpipe.stages import load_table


def run(ctx) -> dict:
    if ctx.config.task == "ranking":  # interactions, not a features matrix: trainpipe/ranking/stages.py
        from trainpipe.ranking import stages as ranking

        return ranking.validate(ctx)
    report, columns = check_table(load_table(ctx), ctx.config)
    (ctx.stage_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    if columns:
        (ctx.stage_dir / "schema.yaml").write_text(schema_to_yaml(SchemaSpec(columns=columns)))
    if report["errors"]:
        lines = [e["message"] for e in report["errors"]]
        first = report["errors"][0]
        if first["message"].startswith(("data.", "schema.")):
            key = first["message"].split(":")[0]
        elif first.get("column") in columns:
            key = f"schema.columns.{first['column']}"
        else:
            key = f"column {first.get('column')}" if first.get("column") else "schema"
        head = lines[0] if len(lines) == 1 else f"{len(lines)} data checks failed: {lines[0]}; ..."
        raise ValidationFailed(f"{head} (report: {ctx.run_dir / 'validate.failed' / 'report.json'})", key=key,
                               lines=lines)
    return {
        "outputs": {"report": "report.json"},
        "artifacts": [p for p in ("report.json", "schema.yaml") if (ctx.stage_dir / p).exists()],
        "metrics": {"data_check_warnings": float(len(report["warnings"]))},
        "summary": {"checks_passed": True, "columns_checked": len(columns), "warnings": len(report["warnings"]),
                    "warning_messages": [w["message"] for w in report["warnings"][:5]]},
    }
