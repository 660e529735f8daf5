"""`trainpipe validate`: the config and the data checked without a run folder or MLflow run.

The checks are the validate stage's own (the run's Task, trainpipe/tasks), run on the data as it is now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainpipe.data.io import read_table
from trainpipe.errors import DataError
from trainpipe.tasks import task_for

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def check_config_and_data(config: PipelineConfig) -> dict:
    from trainpipe.pipeline.driver import preflight

    preflight(config)
    frame, files = read_table(config.data)
    if len(frame) == 0:
        raise DataError(f"data.path: the dataset is empty (0 rows in {', '.join(files[:3])})", key="data.path")
    report = task_for(config).check_data(frame)
    report["files"] = files
    return report
