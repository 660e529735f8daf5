"""Entry points: write a run's report (CLI `trainpipe report`, and the report stage) and a comparison page."""

from __future__ import annotations

import time
from pathlib import Path

from trainpipe.reports import sections_model as model_sections
from trainpipe.reports import sections_run as run_sections
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.render import render_page, write_atomic
from trainpipe.reports.tracked import Tracked, lookup
from trainpipe.reports.view import Limits, Section

REPORT_FILE = "report.html"

# (key, title, maker): the report's sections in page order; docs/monitoring.md describes each one.
SECTIONS = (
    ("header", "Summary", lambda f, t, lim: run_sections.header(f, t)),
    ("data", "Data", lambda f, t, lim: run_sections.data(f, lim)),
    ("training", "Training", lambda f, t, lim: model_sections.training(f, lim)),
    ("evaluation", "Evaluation", lambda f, t, lim: model_sections.evaluation(f, lim)),
    ("slices", "Slice metrics", lambda f, t, lim: model_sections.slices(f)),
    ("importance", "Feature importance", lambda f, t, lim: model_sections.importance(f, lim)),
    ("tuning", "Tuning", lambda f, t, lim: model_sections.tuning(f)),
    ("monitoring", "Training health and resources", lambda f, t, lim: run_sections.monitoring(f, t)),
    ("lineage", "Lineage and environment", lambda f, t, lim: run_sections.lineage(f, t)),
)


def make_sections(folder: RunFolder, tracked: Tracked, limits: Limits, strict: bool = False) -> tuple[list[Section], list[str]]:
    """Every section; one that raises becomes a section saying so (strict: re-raise, for --debug and tests)."""
    sections, problems = [], []
    for key, title, maker in SECTIONS:
        try:
            sections.append(maker(folder, tracked, limits))
        except Exception as exc:
            if strict:
                raise
            problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            problems.append(f"section {key}: {problem}")
            sections.append(Section(key, title, missing=f"could not be made ({problem})"))
    return sections, problems


def write_report(run_dir: Path, out: Path | None = None, *, tracking: bool = True, tracking_uri: str | None = None,
                 tracked: Tracked | None = None, limits: Limits = Limits(), strict: bool = False,
                 status: str | None = None, error: str | None = None) -> dict:
    """Write the run's report (default `<run folder>/report.html`); returns where, its size and what it holds.

    What MLflow knows (environment tags, current aliases, start and end) is read from it, unless `tracked`
    is given (the report stage inside a run can pass `tracked.this_process()`: no MLflow round trip) or
    tracking=False (then the lineage section says the git commit and library versions were not read).
    status/error: how the run is ending, for the report stage (run.json still says "running" then).
    """
    started = time.perf_counter()
    folder = RunFolder.open(Path(run_dir))
    if status is not None:
        folder.meta.update(status=status, **({"error": error} if error else {}))
    if tracked is None:
        tracked = lookup(folder, tracking_uri) if tracking else Tracked(reason="MLflow was not read for this report")
    sections, problems = make_sections(folder, tracked, limits, strict)
    status = folder.meta.get("status", "unknown")
    subtitle = (f"{folder.task or '?'} · {folder.setting('model.type', '?')} · status {status} · "
                f"{folder.setting('name', '')}").rstrip(" ·")
    html = render_page(f"trainpipe run {folder.run_id}", subtitle, sections)
    path = Path(out) if out is not None else folder.path / REPORT_FILE
    size = write_atomic(path, html)
    return {"run_id": folder.run_id, "status": status, "path": str(path), "bytes": size,
            "seconds": round(time.perf_counter() - started, 3),
            "figures": sum(len(s.figures) for s in sections),
            "sections": {s.key: s.to_json() for s in sections}, "problems": problems,
            "environment": tracked.reason or tracked.source}


def write_comparison(comparison: dict, out: Path, limits: Limits = Limits()) -> dict:
    """The `runs compare --html` page from `runs.compare_runs`' result."""
    from trainpipe.reports.compare import comparison_sections

    started = time.perf_counter()
    sections = comparison_sections(comparison, limits)
    labels = [r["label"] for r in comparison["runs"]]
    html = render_page(f"trainpipe: {len(labels)} runs compared", " · ".join(labels), sections)
    size = write_atomic(Path(out), html)
    return {"path": str(out), "bytes": size, "seconds": round(time.perf_counter() - started, 3),
            "figures": sum(len(s.figures) for s in sections)}
