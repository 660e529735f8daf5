"""The one seam between tasks: `task_for(config)` picks the implementation of the Task protocol (base.py) once
per run, from `config.task`; stages ask it whatever differs between tabular tasks (tabular.py) and ranking
(ranking.py), so no stage branches on the task."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.tasks.base import Task


def task_for(config: PipelineConfig) -> Task:
    if config.task == "ranking":
        from trainpipe.tasks.ranking import RankingTask

        return RankingTask(config)
    if config.data.streaming != "off":  # streams when ingest decided so (data.streaming), else TabularTask's path
        from trainpipe.tasks.streamed import StreamedTabularTask

        return StreamedTabularTask(config)
    from trainpipe.tasks.tabular import TabularTask

    return TabularTask(config)
