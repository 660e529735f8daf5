"""The seam between tasks: one implementation per task, picked once from `config.task`, each with every
method of the Task protocol."""

from __future__ import annotations

import inspect

import pytest

from trainpipe.config import config_from_dict
from trainpipe.tasks import task_for
from trainpipe.tasks.base import Task
from trainpipe.tasks.ranking import RankingTask
from trainpipe.tasks.streamed import StreamedTabularTask
from trainpipe.tasks.tabular import TabularTask

TABULAR = {"task": "binary", "data": {"path": "d.csv", "target": "y"}, "evaluation": {"primary_metric": "log_loss"}}
RANKING = {"task": "ranking", "data": {"path": "d.csv"}, "ranking": {"user": "u", "item": "i", "k": [20, 5]}}


OFF = {**TABULAR, "data": {**TABULAR["data"], "streaming": "off"}}


# data.streaming auto (the default) or on: the tabular task that streams when ingest decided so (tasks/streamed.py)
@pytest.mark.parametrize("doc, cls", [(OFF, TabularTask), ({**OFF, "task": "regression", "evaluation": {}}, TabularTask),
                                      (TABULAR, StreamedTabularTask), (RANKING, RankingTask)])
def test_the_task_is_picked_from_config_task(doc, cls):
    assert type(task_for(config_from_dict(doc))) is cls


@pytest.mark.parametrize("cls", [TabularTask, StreamedTabularTask, RankingTask])
def test_each_task_implements_every_method_of_the_protocol_with_its_signature(cls):
    wanted = {n: m for n, m in vars(Task).items() if inspect.isfunction(m) and not n.startswith("_")}
    assert len(wanted) == 15
    for name, method in wanted.items():
        assert inspect.signature(getattr(cls, name)).parameters.keys() == inspect.signature(method).parameters.keys(), name


def test_the_headline_metric_is_the_tasks():
    assert task_for(config_from_dict(TABULAR)).primary_metric() == ("log_loss", "min")
    assert task_for(config_from_dict({**TABULAR, "task": "regression", "evaluation": {}})).primary_metric() == \
        ("rmse", "min")
    assert task_for(config_from_dict(RANKING)).primary_metric() == ("recall_at_20", "max")  # the first cut-off
