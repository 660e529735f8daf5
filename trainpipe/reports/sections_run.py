"""Report sections about the run itself: header, data, monitoring, lineage and environment."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any
from datetime import datetime

from trainpipe.reports import figures as fig
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.sections_drift import drift_part
from trainpipe.redaction import NAME_KEYED_MAPS, redact_config, redact_url_credentials
from trainpipe.reports.tracked import Tracked
from trainpipe.reports.view import Figure, Limits, Section, Table

STAGE_ORDER = ("ingest", "validate", "split", "features", "tune", "train", "evaluate", "drift", "gate", "register",
               "report")


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _when(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z") if text else None
    except ValueError:
        return None


def duration(folder: RunFolder, tracked: Tracked) -> tuple[float | None, str]:
    """(seconds, where the number comes from): MLflow's start and end, else run.json and the manifests."""
    if tracked.start_ms and tracked.end_ms:
        return (tracked.end_ms - tracked.start_ms) / 1000, "MLflow run start to end"
    started = _when(folder.meta.get("created_at"))
    ends = [e for e in (_when((folder.manifest(s) or {}).get("finished_at")) for s in STAGE_ORDER) if e is not None]
    if started and ends:
        return max((max(ends) - started).total_seconds(), 0.0), "run created to last finished stage"
    return None, "not recorded"


def stages_table(folder: RunFolder) -> Table:
    rows = []
    states = folder.meta.get("stages", {})
    for name in [s for s in STAGE_ORDER if s in states] + [s for s in states if s not in STAGE_ORDER]:
        state = states[name]
        note = state.get("error") or (f"reused from {state['reused_from']}" if state.get("reused_from") else "")
        rows.append([name, state.get("status"), seconds_text(state.get("seconds")), note])
    return Table("Stages", ["stage", "status", "time", "note"], rows)


def gate_summary(folder: RunFolder) -> tuple[str, Table | None, list[str]]:
    decision = folder.json("gate", "decision.json")
    if decision is None:
        return f"not decided ({folder.why_missing('gate')})", None, []
    failed = [c for c in decision.get("checks", []) if not c.get("passed")]
    verdict = "passed" if decision.get("passed") else f"failed ({len(failed)} check(s))"
    rows = [["✓" if c.get("passed") else "✗", c.get("check"), c.get("key"), c.get("reason")]
            for c in decision.get("checks", [])]
    notes = []
    champion = decision.get("champion") or {}
    if champion.get("reason"):
        notes.append(f"champion comparison: {champion['reason']}")
    elif champion.get("status") == "compared":
        ci = champion.get("ci") or {}
        interval = (f", {int(ci['confidence'] * 100)}% CI of the difference [{ci['low']:+.4g}, {ci['high']:+.4g}]"
                    if ci.get("low") is not None else "")
        notes.append(f"champion v{champion.get('champion_version')}: {champion.get('metric')} "
                     f"{champion.get('champion'):.4g} → {champion.get('challenger'):.4g} "
                     f"(improvement {champion.get('improvement'):+.4g}{interval})")
    if not rows:
        notes.append("no threshold, slice or champion check ran")
    return verdict, Table("Gate checks", ["", "check", "config key", "reason"], rows) if rows else None, notes


def registration(folder: RunFolder, tracked: Tracked) -> str:
    record = folder.json("register", "registered.json")
    if record is None:
        return f"not registered ({folder.why_missing('register')})"
    if record.get("registry") != "mlflow":
        return f"not registered: the registry is off (package in {record.get('package')})"
    aliases = tracked.aliases if tracked.aliases is not None else record.get("aliases", [])
    when = "now" if tracked.aliases is not None else "at registration"
    alias_text = ", ".join(f"@{a}" for a in aliases) or "none"
    note = f"; {record['note']}" if record.get("note") else ""
    return f"{record.get('name')} version {record.get('version')} (aliases {when}: {alias_text}){note}"


def cost_text(folder: RunFolder) -> str:
    """The run's measured usage and its estimated cost (run.json, updated after every stage)."""
    usage = folder.meta.get("usage")
    study = folder.json("tune", "study.json")
    rate = folder.setting("tuning.cost.usd_per_hour", 0)
    tuning = f"; tuning trials ${study.get('cost_usd', 0):.4f}" if study is not None and rate else ""
    if not usage:
        return f"not measured (run.json records no usage: a run from before cost was measured){tuning}"
    used = (f"{seconds_text(usage.get('wall_s'))} wall, {usage.get('cpu_s', 0):,.1f} CPU-seconds, "
            f"{usage.get('gpu_s', 0):,.1f} GPU-seconds")
    rates = folder.setting("cost.rates", {}) or {}
    priced = any(v for v in rates.values()) or folder.setting("cost.machine_type")
    price = f"${folder.meta.get('cost_usd', 0):.4f}" if priced else "no price set (cost.rates)"
    return f"{price} ({used}, up to the last stage){tuning}"


def header(folder: RunFolder, tracked: Tracked) -> Section:
    seconds, source = duration(folder, tracked)
    evaluate = (folder.manifest("evaluate") or {}).get("summary", {})
    primary = evaluate.get("primary_metric")
    headline = (f"{primary}: validation {evaluate.get('validation'):.4f} · test {evaluate.get('test'):.4f}"
                if primary and evaluate.get("validation") is not None and evaluate.get("test") is not None
                else folder.why_missing("evaluate"))
    verdict, checks, gate_notes = gate_summary(folder)
    facts = [("run id", folder.run_id), ("status", folder.meta.get("status", "unknown")),
             ("started", folder.meta.get("created_at", "—")), ("duration", f"{seconds_text(seconds)} ({source})"),
             ("cost", cost_text(folder)), ("task", folder.task or "—"),
             ("model family", folder.setting("model.type", "—")), ("primary metric", headline), ("gate", verdict),
             ("registered", registration(folder, tracked))]
    if folder.meta.get("error"):
        facts.insert(2, ("error", folder.meta["error"]))
    section = Section("header", "Summary", facts=facts, tables=[stages_table(folder)], notes=gate_notes)
    if checks is not None:
        section.tables.append(checks)
    return section


# -- data ------------------------------------------------------------------------------------------
def _quantile(entry: dict, name: str) -> Any:
    return (entry.get("quantiles") or {}).get(name)


def column_table(stats: dict, limits: Limits) -> Table:
    columns = stats.get("columns", {})
    rows = []
    for name, entry in list(columns.items())[: limits.columns]:
        count = entry.get("count") or 0
        nulls = entry.get("nulls")
        share = f"{nulls / count:.1%}" if count and nulls is not None else "—"
        if "top" in entry:
            top = ", ".join(f"{k} ({v:,})" for k, v in list(entry["top"].items())[:3])
            rows.append([name, entry.get("dtype"), share, None, None, None, None, None,
                         f"{entry.get('distinct_in_sample', '?')} distinct; top: {top}"])
        else:
            rows.append([name, entry.get("dtype"), share, entry.get("min"), _quantile(entry, "p50"), entry.get("max"),
                         entry.get("mean"), entry.get("std"),
                         f"true {entry['true_fraction']:.1%}" if entry.get("true_fraction") is not None else ""])
    note = (f"first {limits.columns} of {len(columns)} columns" if len(columns) > limits.columns else None)
    return Table("Per-column statistics (ingest)", ["column", "dtype", "missing", "min", "median", "max", "mean", "std",
                                                     "values"], rows, note=note)


def _label_balance(split: dict) -> tuple[Table, Figure] | None:
    counts = split.get("class_counts")
    if not counts:
        return None
    classes = sorted({c for part in counts.values() for c in part}, key=str)
    rows, shares = [], {}
    for part, by_class in counts.items():
        total = sum(by_class.values()) or 1
        rows.append([part] + [f"{by_class.get(c, 0):,} ({by_class.get(c, 0) / total:.1%})" for c in classes])
        shares[part] = [by_class.get(c, 0) / total for c in classes]
    figure = Figure("Label balance per split", fig.grouped_bars(classes, shares, "share of rows"))
    return Table("Label balance", ["split"] + [str(c) for c in classes], rows), figure


def _validation_table(report: dict) -> Table | None:
    rows = []
    for level in ("errors", "warnings"):
        for item in report.get(level, []):
            item = item if isinstance(item, dict) else {"message": str(item)}
            rows.append([level[:-1], item.get("column") or "", item.get("check") or "", item.get("message")])
    return Table("Validation findings", ["level", "column", "check", "message"], rows) if rows else None


def data(folder: RunFolder, limits: Limits) -> Section:
    section = Section("data", "Data")
    source = folder.json("ingest", "source.json")
    stats = folder.json("ingest", "stats.json")
    if source is None and stats is None:
        section.missing = folder.why_missing("ingest")
        return section
    source = source or {}
    files = source.get("files", [])
    section.facts += [("fingerprint", source.get("fingerprint") or (folder.manifest("ingest") or {}).get("identity")),
                      ("rows", f"{source.get('rows', (stats or {}).get('rows', 0)):,}"),
                      ("columns", len(source.get("columns", [])) or len((stats or {}).get("columns", {}))),
                      ("source", ", ".join(files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else ""))]
    split = folder.json("split", "split.json")
    if split is not None:
        section.facts += [("split", f"{split.get('strategy')} (seed {split.get('seed')}, hash {split.get('hash')})")]
        sizes = split.get("sizes", {})
        total = sum(sizes.values()) or 1
        section.tables.append(Table("Rows per split", ["split", "rows", "share"] + (
            ["users"] if "users" in split else []),
            [[k, f"{v:,}", f"{v / total:.1%}"] + ([f"{split['users'].get(k, 0):,}"] if "users" in split else [])
             for k, v in sizes.items()]))
        balance = _label_balance(split)
        if balance is not None:
            section.tables.append(balance[0])
            section.figures.append(balance[1])
    else:
        section.notes.append(f"rows per split: {folder.why_missing('split')}")
    report = folder.json("validate", "report.json")
    if report is not None and folder.task == "ranking":
        section.facts += [("interactions", f"{report.get('interactions', 0):,}"), ("users", f"{report.get('users', 0):,}"),
                          ("items", f"{report.get('items', 0):,}"), ("density", f"{report.get('density', 0):.4%}"),
                          ("dropped", ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report.get("dropped", {}).items())
                           or "none")]
    target = folder.setting("data.target")
    if stats is not None and folder.task == "regression" and target in stats.get("columns", {}):
        entry = stats["columns"][target]
        section.tables.append(Table(f"Target {target}", ["min", "p01", "p25", "median", "p75", "p99", "max", "mean", "std"],
                                    [[entry.get("min")] + [_quantile(entry, q) for q in ("p01", "p25", "p50", "p75", "p99")]
                                     + [entry.get("max"), entry.get("mean"), entry.get("std")]]))
    if stats is not None:
        section.tables.append(column_table(stats, limits))
    if report is None:
        section.notes.append(f"validation: {folder.why_missing('validate')}")
    else:
        findings = _validation_table(report)
        if findings is not None:
            section.tables.append(findings)
        else:
            section.notes.append("validation: every check passed, no warnings")
    tables, figures, notes = drift_part(folder)
    section.tables += tables
    section.figures += figures
    section.notes += notes
    return section


SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}
SYSTEM_FIGURES = {  # MLflow system-metric names (monitoring/system_metrics.py) -> one figure each
    "CPU utilisation (%)": ("system/cpu_utilization_percentage",),
    "Memory (MB)": ("system/system_memory_usage_megabytes",),
    "GPU utilisation (%)": ("system/gpu_0_utilization_percentage",),
    "GPU memory (MB)": ("system/gpu_0_memory_usage_megabytes",),
}


def _events_table(events: list[dict[str, Any]]) -> Table:
    rows = [[e.get("time", ""), e.get("kind", ""), e.get("severity", ""), e.get("summary", "")]
            for e in events]
    worst = min((SEVERITY_ORDER.get(str(e.get("severity")), 9) for e in events), default=9)
    note = None if worst > 2 else "warnings or worse: see docs/monitoring.md for what each check means"
    return Table("Events (health checks, drift, budget, gate, champion, run end)", ["time", "kind", "severity",
                                                                                   "summary"], rows, note=note)


def monitoring(folder: RunFolder, tracked: Tracked) -> Section:
    """The run's events (events.jsonl: health checks per epoch/round, drift, budget...), what it used (run.json's
    usage) and MLflow's system metrics sampled while train and tune ran."""
    section = Section("monitoring", "Training health and resources")
    events = folder.events()
    if events:
        section.tables.append(_events_table(events))
        health = [e for e in events if e.get("kind") == "health"]
        section.facts.append(("health events", f"{len(health)}" + (
            f" ({', '.join(sorted({str(e.get('details', {}).get('check', '?')) for e in health}))})" if health else "")))
    else:
        section.notes.append("no events were recorded for this run (no health warnings, drift or budget stops)")
    usage = folder.meta.get("usage") or {}
    if usage:
        section.facts += [("wall time", seconds_text(usage.get("wall_s"))),
                          ("CPU time", seconds_text(usage.get("cpu_s"))),
                          ("GPU time", seconds_text(usage.get("gpu_s")) if usage.get("gpu_s") else "none used")]
    else:
        section.notes.append("resource usage: not recorded in run.json")
    for title, names in SYSTEM_FIGURES.items():
        series = {name.removeprefix("system/"): tracked.system[name] for name in names if name in tracked.system}
        if series:
            section.figures.append(Figure(title, fig.lines(series, "sample", title)))
    if not tracked.system:
        section.notes.append("system metrics (CPU, memory, GPU over time): "
                             + (tracked.reason or "none logged (system_metrics.enabled: false, or a short run)"))
    return section


# -- lineage and environment -------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """This machine, described with the standard library (no psutil, no torch import)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": f"{cpu}, {os.cpu_count()} logical cores", "os": platform.platform(terse=True)}
    try:
        out["memory"] = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    torch = sys.modules.get("torch")  # only when the run's process already imported it
    if torch is not None and torch.cuda.is_available():
        out["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return out


def lineage(folder: RunFolder, tracked: Tracked) -> Section:
    import yaml

    tags = tracked.tags
    commit = tags.get("git_commit")
    facts = [("config hash", folder.meta.get("config_hash")), ("trainpipe", folder.meta.get("trainpipe_version")),
             ("git commit", f"{commit}{' (uncommitted changes)' if tags.get('git_dirty') == 'true' else ''}"
              if commit else "not recorded" if not tracked.reason else f"not known ({tracked.reason})"),
             ("MLflow run", folder.meta.get("mlflow_run_id") or "none"),
             ("tracking URI", redact_url_credentials(folder.meta.get("tracking_uri") or "—")),
             ("python", tags.get("python_version", "not recorded"))]
    versions = sorted((k.removeprefix("version."), v) for k, v in tags.items() if k.startswith("version."))
    tables = []
    if versions:
        tables.append(Table(f"Library versions ({tracked.source})", ["library", "version"],
                            [list(v) for v in versions]))
    rows, hosts = [], set()
    for stage in STAGE_ORDER:
        manifest = folder.manifest(stage)
        if manifest is None:
            continue
        hosts.add(manifest.get("host"))
        rows.append([stage, manifest.get("status"), manifest.get("identity"), manifest.get("reused_from") or "",
                     manifest.get("host"), manifest.get("code_version")])
    if rows:
        tables.append(Table("Stage lineage", ["stage", "status", "identity", "reused from", "host", "trainpipe"], rows))
    hosts.discard(None)
    here = socket.gethostname()
    if hosts == {here}:
        facts += [(f"hardware ({here})", "; ".join(f"{k} {v}" for k, v in machine().items()))]
    else:
        facts += [("hosts", ", ".join(sorted(str(h) for h in hosts)) or tags.get("host", "not recorded")),
                  ("hardware", "not recorded (the report is written on another machine than the run's)")]
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: ~10x faster
    # config.yaml is already the recorded view; redacted again in case it was written by hand or by an older trainpipe
    shown = redact_config(folder.config, {}, NAME_KEYED_MAPS) if folder.config else None
    config_text = yaml.dump(shown, Dumper=dumper, sort_keys=False) if shown else "config.yaml is missing"
    return Section("lineage", "Lineage and environment", facts=facts, tables=tables, code=config_text,
                   notes=["config as the run recorded it: passwords, tokens, secrets and URL credentials replaced by "
                          "<redacted>, values read from the environment shown as their ${oc.env:...} expression"])
