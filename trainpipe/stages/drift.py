"""drift: this run's data against the champion's training data (docs/monitoring.md, Drift statistics).

Every registered version carries a summary of the rows it was trained on (`drift_reference.json` in its
package, written by register and covered by the package's checksum). This stage compares the whole ingested
table with the current champion's summary: PSI and a chi-square test per column and for the label, KS for
numeric columns (trainpipe/data/drift.py). It writes `drift.json` (the table the report and `--json` show),
sends a drift event when a column warns or fails, and never stops the run itself: under `drift.mode: gate` the
gate stage turns a failed column into a failed check (exit 3, the column named).

A stage of its own rather than a part of validate because its result depends on the registry (which version is
champion now), not only on the data: validate stays reusable from the cache, this stage is never reused. Tables
larger than `drift.max_rows` are compared on a seeded sample of that many rows (the reference likewise).
No champion, no registry, a champion registered before references were saved, or a task that does not measure
drift: skipped, with the reason in the stage line and the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainpipe.stages.context import StageContext, StageResult, StageSpec

REFERENCE_FILE = "drift_reference.json"  # in a registered version's package folder
RESULT_FILE = "drift.json"  # in this stage's folder


def line(s: dict) -> str:
    return str(s.get("note") or s.get("status"))


# After evaluate, just before the gate that may act on it: it needs the registry, like the gate, so this run's
# MLflow worker has finished its work (and its MLflow import) by then instead of holding up the data stages.
SPEC = StageSpec("drift", sections=("drift", "data", "task", "features", "seed"), upstream=("ingest", "validate"),
                 line=line, reusable=False, enabled_by="drift.enabled")


def champion_reference(ctx: StageContext) -> tuple[dict[str, Any] | None, str, str | None]:
    """(the champion's reference summary or None, why none / which version, the version)."""
    from trainpipe.data.drift import check_summary
    from trainpipe.errors import RegistryError
    from trainpipe.registry.client import Registry, model_name, registry_enabled

    config = ctx.config
    if not registry_enabled(config):
        return None, "skipped: the registry is off (tracking or registry disabled): no champion to compare with", None
    if ctx.tracking is not None:
        ctx.tracking.close()  # this run's MLflow calls land before this thread opens the registry (stages/gate.py)
    registry, name = Registry(ctx.store, config.tracking), model_name(config)
    version = registry.alias_version(name, "champion") if registry.exists(name) else None
    if version is None:
        return None, f"skipped: no champion of {name!r} yet: nothing to compare with", None
    try:
        path, _ = registry.verified_path(f"{name}/{version}")
    except RegistryError as exc:
        return None, f"skipped: the champion v{version} cannot be read: {exc.message}", version
    reference = Path(path) / REFERENCE_FILE
    if not reference.exists():
        return None, (f"skipped: champion v{version} was registered without a drift reference (before trainpipe "
                      "saved one with every version)"), version
    return check_summary(json.loads(reference.read_text()), str(reference)), f"champion {name} v{version}", version


def run(ctx: StageContext) -> StageResult:
    from trainpipe.data.drift import compare
    from trainpipe.monitoring.events import drift_detected

    config = ctx.config
    record: dict[str, Any] = {"status": "skipped", "mode": config.drift.mode, "champion_version": None}
    # the champion's reference first: without one the table is not read (a streamed table is a pass over the source)
    reference, against, version = (None, f"skipped: {ctx.task.drift_skipped}", None) if ctx.task.drift_skipped \
        else champion_reference(ctx)
    table = ctx.task.drift_table(ctx, None) if reference is not None else None
    record.update(champion_version=version, against=against)
    metrics: dict[str, float] = {}
    if reference is None or table is None:
        record["note"] = against
    else:
        found = compare(table.frame, reference, config.drift)  # drift_table sampled the rows
        record.update(found.to_json(), note=f"{found.line()} (against {against})")
        metrics = {"drift_columns_flagged": float(len(found.flagged)),
                   "drift_max_psi": max((r.psi for r in found.rows if r.psi is not None), default=0.0)}
        if found.status != "ok":
            ctx.emit(drift_detected(ctx.run_id, found.status, found.flagged, found.line(),
                                    [c for c in record["columns"] if c["status"] in ("warn", "fail")]))
    (ctx.stage_dir / RESULT_FILE).write_text(json.dumps(record, indent=2, default=str))
    summary = {k: record.get(k) for k in ("status", "mode", "champion_version", "note", "flagged")}
    summary["table"] = record.get("columns", [])  # the drift table, for --json
    return StageResult(outputs={"drift": RESULT_FILE}, artifacts=[RESULT_FILE], metrics=metrics, summary=summary)


def gate_checks(ctx: StageContext) -> list[dict]:
    """The gate's drift check under `drift.mode: gate` (none when drift was skipped or is not a gate)."""
    result = ctx.upstream("drift") / RESULT_FILE
    if ctx.config.drift.mode != "gate" or not result.exists():
        return []
    record = json.loads(result.read_text())
    if record.get("status") not in ("ok", "warn", "fail"):
        return []
    failed = {c["column"]: c for c in record.get("columns", []) if c.get("status") == "fail"}
    worst = next((failed[name] for name in record.get("flagged", []) if name in failed), None)
    return [{"check": "drift", "key": worst["threshold_key"] if worst else "drift.mode",
             "value": worst["value"] if worst else None, "limit": worst["threshold"] if worst else None,
             "passed": not failed, "reason": record["line"]}]
