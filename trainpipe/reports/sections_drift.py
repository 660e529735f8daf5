"""The data section's drift part: the drift stage's table (drift/drift.json) against the champion's data."""

from __future__ import annotations

from trainpipe.reports import figures as fig
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.view import Figure, Table

MOST_PSI = 25  # columns in the PSI chart (the table has them all)


def _number(value: object, digits: str = ".3g") -> str:
    return "—" if value is None else format(value, digits)


def drift_part(folder: RunFolder) -> tuple[list[Table], list[Figure], list[str]]:
    """(tables, figures, notes) of the drift comparison, or one note saying why there is none."""
    record = folder.json("drift", "drift.json")
    if record is None:
        if folder.setting("drift.mode", "warn") == "off":
            return [], [], ["drift against the champion: off (drift.mode: off)"]
        if "drift" not in folder.meta.get("stages", {}):
            return [], [], ["drift against the champion: not measured (this run had no drift stage)"]
        return [], [], [f"drift against the champion: {folder.why_missing('drift')}"]
    if record.get("status") == "skipped":
        return [], [], [f"drift against the champion: {record.get('note')}"]
    columns = record.get("columns", [])
    order = {"fail": 0, "warn": 1, "ok": 2, "skipped": 3}
    rows = [[c["column"], c["role"], c["kind"], c["status"], c.get("statistic") or "",
             _number(c.get("value")), c.get("threshold_key") or "", _number(c.get("psi")), _number(c.get("chi2_p")),
             _number(c.get("ks")), _number(c.get("ks_p")), f"{c.get('rows_reference', 0):,}",
             f"{c.get('rows_current', 0):,}", c.get("note") or ""]
            for c in sorted(columns, key=lambda c: (order.get(c["status"], 4), -(c.get("psi") or 0)))]
    mode = record.get("mode")
    table = Table(f"Drift against the champion v{record.get('champion_version')} ({record.get('status')}, "
                  f"drift.mode {mode})",
                  ["column", "role", "kind", "status", "decided by", "value", "threshold", "PSI", "chi² p", "KS",
                   "KS p", "rows (champion)", "rows (this run)", "note"], rows,
                  note=f"a threshold counts when the test's p < {record.get('alpha', 0):.2g} (drift.pvalue / columns "
                       "compared)")
    measured = sorted((c for c in columns if c.get("psi") is not None), key=lambda c: -c["psi"])[:MOST_PSI]
    figures = []
    if measured:
        figures.append(Figure("Drift: PSI per column (largest first)",
                              fig.bars([c["column"] for c in measured], [c["psi"] for c in measured], "PSI"),
                              caption=f"{len(measured)} of {len(columns)} columns; warn at "
                                      f"{folder.setting('drift.psi_warn', 0.1)}, fail at "
                                      f"{folder.setting('drift.psi_fail', 0.25)}"))
    return [table], figures, [f"drift against the champion: {record.get('line') or record.get('note')}"]
