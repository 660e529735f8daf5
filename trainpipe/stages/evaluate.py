"""evaluate: the trained model's metrics on validation and test (metrics.json), and what the gate needs.

What is measured is the task's: tabular tasks get metrics, curves and confusion matrices, the test scores
(the gate scores slices and the champion on the same rows without predicting again) and latency; ranking
scores the model and its baselines on the same users over the whole catalogue, with the lift.
"""

from __future__ import annotations

import json

from trainpipe.stages.context import StageContext, StageResult, StageSpec, number


def line(s: dict) -> str:
    return f"{s.get('primary_metric')}: validation {number(s.get('validation'))} · test {number(s.get('test'))}"


SPEC = StageSpec("evaluate", sections=("evaluation", "task", "ranking"), upstream=("features", "train"), line=line)


def run(ctx: StageContext) -> StageResult:
    scored = ctx.task.evaluate(ctx)
    (ctx.stage_dir / "metrics.json").write_text(json.dumps(scored.document, indent=2))
    out = scored.output
    return StageResult(outputs={"metrics": "metrics.json", **out.outputs}, artifacts=["metrics.json", *out.artifacts],
                       metrics=out.metrics, summary=out.summary)
