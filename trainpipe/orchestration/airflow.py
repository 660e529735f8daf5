"""An Airflow 3 DAG for one pipeline: a first task that checks the trigger, then one task per active stage.

Every task is a BashOperator running trainpipe in its own process (`trainpipe stage NAME --run RUN_ID`),
so a stage fails, retries and times out on its own, and the only thing that passes between tasks is the
run id (the first task's XCom); data stays in the run folder. Exit codes map onto Airflow states:
0 success; 3 (the gate rejected the model) skips the gate and everything after it; anything else fails
the task, which retries with exponential backoff (a retried train resumes from its checkpoint, and the
stages a retry finds finished are reused).

Airflow is imported inside the functions: `trainpipe --help` and `trainpipe.config` never import it.
"""

from __future__ import annotations

import re
import shlex
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainpipe.config import PipelineConfig, load_config
from trainpipe.errors import ConfigError, MissingDependency
from trainpipe.orchestration.trigger import set_args
from trainpipe.pipeline import active_stages

if TYPE_CHECKING:
    from airflow.sdk import DAG, Asset

GATE_FAILED_EXIT = 3  # trainpipe's exit code when the gate rejects the model (errors.GateFailed)
ASSET_SCHEDULE = "asset"
START_TASK = "start"
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")  # Airflow's rule for DAG ids


def default_command() -> str:
    """The interpreter that parses the DAG runs the tasks: right for one image or one virtualenv, with or
    without its bin/ folder on PATH."""
    return f"{shlex.quote(sys.executable)} -m trainpipe"


def _airflow():
    try:
        import airflow.sdk as sdk
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError as exc:
        raise MissingDependency("Airflow is not installed: pip install 'trainpipe[airflow]'", key="airflow") from exc
    return sdk, BashOperator


def data_asset(config: PipelineConfig) -> "Asset":
    """The Airflow Asset for the pipeline's input data (`data.path`): a producer task with this asset in its
    `outlets`, or an asset event posted to Airflow's API, starts a DAG scheduled with `schedule="asset"`."""
    sdk, _ = _airflow()
    path = config.data.path
    uri = path if "://" in path else Path(path).absolute().as_uri()
    return sdk.Asset(uri)


def _schedule(schedule: str | None, config: PipelineConfig):
    if schedule is None or schedule.strip().lower() in ("", "none", "manual"):
        return None
    if schedule == ASSET_SCHEDULE:
        return data_asset(config)
    return schedule  # a cron expression or a preset (@daily, @weekly, ...); validated with the DAG's timetable


def build_dag(config_path: str | Path, *, dag_id: str | None = None, schedule: str | None = None,
              catchup: bool = False, on_failure_callback: Callable[[Any], None] | None = None,
              command: str | None = None) -> "DAG":
    """The DAG for one pipeline YAML; a DAG file is one call to this (see `trainpipe airflow dag`).

    `schedule`: None (triggered by hand or through the API), a cron expression or preset, or "asset" (runs
    when the input data's Asset is updated). `on_failure_callback`: Airflow's own failure hook for every
    task (trainpipe's alerts, where configured, fire from the trainpipe processes themselves).
    `command`: how tasks start trainpipe (default: this interpreter, `python -m trainpipe`).
    """
    sdk, BashOperator = _airflow()
    config_path = Path(config_path).absolute()
    config = load_config(config_path)
    dag_id = dag_id or config.name
    if not _DAG_ID.match(dag_id):
        raise ConfigError(f"--dag-id: {dag_id!r} is not a valid Airflow DAG id (letters, digits, '_', '.', '-'; "
                          "a pipeline name that is not one needs --dag-id)", key="dag_id")
    stages = active_stages(config)
    settings = config.orchestration
    trainpipe = command or default_command()
    config_arg = shlex.quote(str(config_path))
    overrides = "{{ trainpipe_set_args(dag_run.conf) }}"  # dag_run.conf -> --set key=value, shell-quoted
    run_id = "{{ ti.xcom_pull(task_ids='" + START_TASK + "') }}"  # the first task's only output
    dag = sdk.DAG(
        dag_id,
        schedule=_schedule(schedule, config),
        catchup=catchup,
        max_active_runs=1,  # two runs of one pipeline at once would only compete for the same machine
        tags=["trainpipe"],
        doc_md=f"trainpipe pipeline `{config.name}` from `{config_path}`: {' → '.join(stages)}. "
               "Trigger parameters (`dag_run.conf`) are config overrides: `{\"model.params.max_depth\": 8}`.",
        user_defined_macros={"trainpipe_set_args": set_args},
        default_args={
            "retries": settings.retries,
            "retry_delay": timedelta(seconds=settings.retry_delay),
            "retry_exponential_backoff": 2.0,  # Airflow 3: the multiplier (2: the delay doubles each retry)
            "execution_timeout": timedelta(seconds=settings.timeout) if settings.timeout else None,
            "on_failure_callback": on_failure_callback,
        },
    )
    if dag.timetable is not None:
        try:
            dag.timetable.validate()
        except Exception as exc:  # AirflowTimetableInvalid: a cron expression or preset Airflow cannot read
            raise ConfigError(f"--schedule: {schedule!r} is not a cron expression, a preset (@daily, @weekly, ...) "
                              f"or 'asset': {exc}", key="schedule") from None
    with dag:
        previous = BashOperator(
            task_id=START_TASK,
            doc_md="Checks the config with this DAG run's parameters and names the trainpipe run.",
            bash_command=f'{trainpipe} airflow prepare {config_arg} --dag-id {shlex.quote(dag_id)} '
                         f'--dag-run-id "$AIRFLOW_CTX_DAG_RUN_ID" --stages {",".join(stages)}{overrides}',
            retries=0,  # a wrong config or parameter does not fix itself
            skip_on_exit_code=None,
            cwd=str(config_path.parent),
        )
        for name in stages:
            task = BashOperator(
                task_id=name,
                bash_command=f"{trainpipe} stage {name} --run {run_id} --config {config_arg}{overrides}",
                skip_on_exit_code=GATE_FAILED_EXIT if name == "gate" else None,
                do_xcom_push=False,  # only the run id passes between tasks
                cwd=str(config_path.parent),  # a store left at its default (./.trainpipe) sits by the YAML
            )
            previous >> task
            previous = task
    return dag


DAG_FILE = '''"""Airflow DAG for the trainpipe pipeline {name!r}; written by `trainpipe airflow dag`, edit freely.

Tasks: {tasks}. Each runs `trainpipe stage NAME --run RUN_ID` in its own process;
the config is read here each time Airflow parses this file. Guide: docs/orchestration.md.
"""

from trainpipe.orchestration.airflow import build_dag

dag = build_dag(
    {config!r},
    dag_id={dag_id!r},
    schedule={schedule!r},
    catchup={catchup!r},
)
'''


def dag_file(config_path: str | Path, *, dag_id: str | None = None, schedule: str | None = None,
             catchup: bool = False) -> str:
    """The text of a DAG file for this pipeline, after building the DAG once so that a mistake (config,
    DAG id, schedule) is reported now rather than as an import error inside Airflow."""
    dag = build_dag(config_path, dag_id=dag_id, schedule=schedule, catchup=catchup)
    config = load_config(config_path)
    return DAG_FILE.format(name=config.name, tasks=" → ".join(dag.task_ids), config=str(Path(config_path).absolute()),
                           dag_id=dag.dag_id, schedule=schedule, catchup=catchup)
