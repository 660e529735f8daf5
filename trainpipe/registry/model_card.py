"""The model card: a short markdown page saved with each registered version (and as its description)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def render_card(*, name: str, config: Any, split: dict, metrics: dict, cis: dict, decision: dict, lineage: dict) -> str:
    reg = config.registry
    lines = [f"# {name}", "", "## Intended use", "", reg.intended_use or "_Not stated (set `registry.intended_use`)._", "",
             "## Data", "", f"- fingerprint `{lineage.get('trainpipe.data_fingerprint')}`, split `{split.get('strategy')}` "
             f"(hash `{lineage.get('trainpipe.split_hash')}`)",
             "- rows: " + ", ".join(f"{k} {v:,}" for k, v in split.get("sizes", {}).items())]
    for part, counts in (split.get("class_counts") or {}).items():
        total = sum(counts.values()) or 1
        lines.append(f"- labels in {part}: " + ", ".join(f"{k} {v / total:.1%}" for k, v in counts.items()))
    lines += ["", "## Metrics (test; 95% bootstrap CI)", "", "| metric | validation | test | test CI |", "|---|---|---|---|"]
    for metric, value in metrics.get("test", {}).items():
        ci = cis.get(metric)
        lines.append(f"| {metric} | {_fmt(metrics.get('validation', {}).get(metric))} | {_fmt(value)} | "
                     + (f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "—") + " |")
    if decision.get("slices"):
        lines += ["", "## Slices (test)", "", "| slice | rows | value |", "|---|---|---|"]
        for row in decision["slices"]:
            value = next(v for k, v in row.items() if k not in ("slice", "rows"))
            lines.append(f"| {row['slice']} | {row['rows']} | {_fmt(value)} |")
    lines += ["", "## Gate", "", f"passed: {decision.get('passed')}"]
    lines += [f"- {'✓' if c['passed'] else '✗'} {c['reason']}" for c in decision.get("checks", [])]
    champion = decision.get("champion") or {}
    if champion.get("reason"):
        lines.append(f"- champion: {champion['reason']}")
    lines += ["", "## Lineage", ""] + [f"- {k}: `{v}`" for k, v in sorted(lineage.items())]
    lines += ["", "## Known limitations", ""] + ([f"- {item}" for item in reg.limitations] or
                                                 ["- Trained on the data above only; check the slices before relying on "
                                                  "it for other populations."])
    return "\n".join(lines) + "\n"
