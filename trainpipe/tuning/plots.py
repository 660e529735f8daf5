"""The study's plots as PNG files (optuna.visualization.matplotlib: no plotly or browser needed).

A plot that the study cannot support yet (e.g. importances with one finished trial) is skipped and the
reason returned, never an error: plots must not fail a study that found its parameters.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")


def save_plots(study: Any, folder: Path, metric: str, seed: int = 0) -> tuple[list[str], dict[str, str]]:
    """Write the four plots (the Pareto front too for two objectives); returns (files, skipped reasons)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    kwargs = {"target": target, "target_name": metric} if multi else {"target_name": metric}
    makers = {
        "optimization_history": lambda: vis.plot_optimization_history(study, **kwargs),
        "param_importances": lambda: vis.plot_param_importances(  # seeded: the forest is random
            study, evaluator=FanovaImportanceEvaluator(seed=seed), **kwargs),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, **kwargs),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
    }
    if multi:  # no intermediate values: Optuna cannot prune multi-objective studies
        del makers["intermediate_values"]
        makers["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=[metric, "latency_p99_row_ms"])
    files, skipped = [], {}
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make()
            figure: Any = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.set_size_inches(9, 5.5)
            figure.tight_layout()
            figure.savefig(folder / f"{name}.png", dpi=90)
            plt.close(figure)
            files.append(f"{name}.png")
        except Exception as exc:  # not enough trials of the right kind for this plot yet
            skipped[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            plt.close("all")
    return files, skipped
