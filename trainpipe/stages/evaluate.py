"""evaluate: metrics on validation and test, curves and confusion matrices, test scores and latency.

The test scores (probabilities, or values for regression) are saved for the gate: slices and the
champion comparison score the same rows without predicting again.
"""

from __future__ import annotations

import json

import numpy as np

from trainpipe.evaluation.metrics import compute_metrics, measure_latency, primary_metric
from trainpipe.models import load_family
from trainpipe.stages import load_arrays


def run(ctx) -> dict:
    if ctx.config.task == "ranking":  # the model and its baselines over the whole catalogue
        from trainpipe.ranking import evaluate as ranking

        return ranking.evaluate(ctx)
    config = ctx.config
    model = load_family(ctx.upstream("train") / "model")
    labels = json.loads((ctx.upstream("features") / "features.json").read_text())["labels"]
    n_classes = len(labels["classes"] or [])
    data = load_arrays(ctx, "features", ["X_validation", "y_validation", "X_test", "y_test"])

    metrics, details = {}, {}
    for split in ("validation", "test"):
        metrics[split], details[split] = compute_metrics(config.task, data[f"y_{split}"], model, data[f"X_{split}"],
                                                         n_classes, config.evaluation)
    name, direction = primary_metric(config.task, config.evaluation)
    (ctx.stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (ctx.stage_dir / "details.json").write_text(json.dumps({"classes": labels["classes"], **details}, indent=2))
    X_test = data["X_test"]
    np.save(ctx.stage_dir / "test_scores.npy", model.predict(X_test) if config.task == "regression"
            else model.predict_proba(X_test))
    latency = measure_latency(model, X_test, config.task, config.evaluation.latency_batch_rows,
                              config.evaluation.latency_batches)
    (ctx.stage_dir / "latency.json").write_text(json.dumps(latency, indent=2))
    flat = {f"{split}_{k}": v for split, values in metrics.items() for k, v in values.items()}
    flat.update(latency)
    return {
        "outputs": {"metrics": "metrics.json", "details": "details.json", "test_scores": "test_scores.npy",
                    "latency": "latency.json"},
        "artifacts": ["metrics.json", "details.json", "latency.json"],
        "metrics": flat,
        "summary": {"primary_metric": name, "direction": direction,
                    "validation": metrics["validation"].get(name), "test": metrics["test"].get(name)},
    }
