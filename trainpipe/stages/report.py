"""report: the run's HTML report (trainpipe/reports) in the run folder, logged to MLflow with the run.

The last stage, and the one that also runs after a failed gate (`runs_after_failure`): a blocked model's
report shows the gate's checks and why it failed, and the run still ends with the gate's exit code 3. It
is never reused: it describes the whole run folder as it is now, not one upstream stage. The report is
written in the run's own process, so what only MLflow would know (library versions, git commit) is read
from this process (`tracked.this_process()`), with no MLflow round trip.
"""

from __future__ import annotations

from trainpipe.errors import GateFailed
from trainpipe.stages.context import StageContext, StageResult, StageSpec


def line(s: dict) -> str:
    return f"{s.get('file')} · {s.get('bytes', 0) / 1e6:.2f} MB · {s.get('figures')} plot(s)"


SPEC = StageSpec("report", sections=("report",), upstream=(), line=line, reusable=False,
                 enabled_by="report.enabled", runs_after_failure=(GateFailed,))


def run(ctx: StageContext) -> StageResult:
    from trainpipe.reports.build import REPORT_FILE, write_report
    from trainpipe.reports.tracked import this_process

    failure = ctx.failure
    # run.json still says "running": the report says how the run is ending
    status, error = ("failed", getattr(failure, "message", str(failure))) if failure is not None else ("completed", None)
    written = write_report(ctx.run_dir, ctx.stage_dir / REPORT_FILE, tracked=this_process(), status=status,
                           error=error)
    missing = sorted(k for k, s in written["sections"].items() if s.get("missing"))
    return StageResult(outputs={"report": REPORT_FILE}, artifacts=[REPORT_FILE],
                       metrics={"report_bytes": float(written["bytes"])},
                       summary={"file": REPORT_FILE, "path": written["path"], "bytes": written["bytes"],
                                "figures": written["figures"], "seconds": written["seconds"],
                                "sections_without_data": missing, "problems": written["problems"]})
