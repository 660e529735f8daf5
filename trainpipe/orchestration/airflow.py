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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.config import PipelineConfig, load_config
from trainpipe.errors import ConfigError, MissingDependency
from trainpipe.orchestration.trigger import set_args
from trainpipe.pipeline.stages import SPECS, active_stages

if TYPE_CHECKING:
    from airflow.sdk import DAG, Asset

GATE_FAILED_EXIT = 3  # trainpipe's exit code when the gate rejects the model (errors.GateFailed)
ASSET_SCHEDULE = "asset"
START_TASK = "start"
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")  # Airflow's rule for DAG ids
# Rendered by Airflow in each task's command: the first task's XCom, and dag_run.conf as --set arguments.
RUN_ID = "{{ ti.xcom_pull(task_ids='" + START_TASK + "') }}"
OVERRIDES = "{{ trainpipe_set_args(dag_run.conf) }}"


def default_command() -> str:
    """The interpreter that parses the DAG runs the tasks: right for one image or one virtualenv, whether
    or not its bin/ folder is on the workers' PATH."""
    return f"{shlex.quote(sys.executable)} -m trainpipe"


def _airflow() -> tuple[Any, Any]:
    try:
        import airflow.sdk as sdk
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError as exc:
        raise MissingDependency("Airflow is not installed: pip install 'trainpipe[airflow]'",
                                key="airflow") from exc
    return sdk, BashOperator


def data_asset(config: PipelineConfig) -> Asset:
    """The Airflow Asset of the pipeline's input data (`data.path`, as a URI). A task that lists it in its
    `outlets`, or an asset event posted to Airflow's REST API, starts a DAG built with schedule="asset"."""
    sdk, _ = _airflow()
    path = config.data.path
    return sdk.Asset(path if "://" in path else Path(path).absolute().as_uri())


def _schedule(schedule: str | None, config: PipelineConfig) -> Any:
    if schedule is None or schedule.strip().lower() in ("", "none", "manual"):
        return None
    if schedule == ASSET_SCHEDULE:
        return data_asset(config)
    return schedule  # a cron expression or a preset; checked through the DAG's timetable below


def _check_schedule(dag: DAG, schedule: str | None) -> None:
    try:
        dag.timetable.validate()
    except Exception as exc:  # AirflowTimetableInvalid: a cron expression or preset Airflow cannot read
        raise ConfigError(f"--schedule: {schedule!r} is not a cron expression, a preset (@daily, @weekly, "
                          f"...) or 'asset': {exc}", key="schedule") from None


def build_dag(config_path: str | Path, *, dag_id: str | None = None, schedule: str | None = None,
              catchup: bool = False, on_failure_callback: Callable[[Any], None] | None = None,
              command: str | None = None) -> DAG:
    """The DAG of one pipeline YAML; a DAG file is one call to this (see `trainpipe airflow dag`).

    `schedule`: None (triggered by hand or through the API), a cron expression or preset, or "asset"
    (runs when the input data's Asset is updated). `on_failure_callback`: Airflow's own failure hook for
    every task; trainpipe's alerts, where configured, fire from the trainpipe processes themselves.
    `command`: how a task starts trainpipe (default: this interpreter, `python -m trainpipe`).
    """
    config_path = Path(config_path).absolute()
    config = load_config(config_path)
    dag_id = dag_id or config.name
    if not _DAG_ID.match(dag_id):
        raise ConfigError(f"--dag-id: {dag_id!r} is not a valid Airflow DAG id (letters, digits, '_', '.', "
                          "'-'; a pipeline name that is not one needs --dag-id)", key="dag_id")
    sdk, BashOperator = _airflow()
    stages = active_stages(config)
    settings = config.orchestration
    trainpipe = command or default_command()
    yaml_arg = shlex.quote(str(config_path))
    dag = sdk.DAG(
        dag_id,
        schedule=_schedule(schedule, config),
        catchup=catchup,
        max_active_runs=1,  # two runs of one pipeline at once would only compete for the same machines
        tags=["trainpipe"],
        doc_md=f"trainpipe pipeline `{config.name}` from `{config_path}`: {' → '.join(stages)}. Trigger "
               "parameters (`dag_run.conf`) are config overrides, e.g. `{\"model.params.max_depth\": 8}`.",
        user_defined_macros={"trainpipe_set_args": set_args},
        default_args={
            "retries": settings.retries,
            "retry_delay": timedelta(seconds=settings.retry_delay),
            "retry_exponential_backoff": 2.0,  # Airflow 3: the multiplier; 2 doubles the delay each retry
            "execution_timeout": timedelta(seconds=settings.timeout) if settings.timeout else None,
            "on_failure_callback": on_failure_callback,
            "cwd": str(config_path.parent),  # a store left at its default (./.trainpipe) sits by the YAML
        },
    )
    _check_schedule(dag, schedule)
    with dag:
        previous = BashOperator(
            task_id=START_TASK,
            doc_md="Checks the config with this DAG run's parameters; its output is the trainpipe run id.",
            bash_command=f'{trainpipe} airflow prepare {yaml_arg} --dag-id {shlex.quote(dag_id)} '
                         f'--dag-run-id "$AIRFLOW_CTX_DAG_RUN_ID" --stages {",".join(stages)}{OVERRIDES}',
            retries=0,  # a wrong config or parameter does not fix itself
            skip_on_exit_code=None,
        )
        for name in stages:
            task = BashOperator(
                task_id=name,
                bash_command=f"{trainpipe} stage {name} --run {RUN_ID} --config {yaml_arg}{OVERRIDES}",
                skip_on_exit_code=GATE_FAILED_EXIT if name == "gate" else None,
                do_xcom_push=False,  # only the run id passes between tasks
                # the report also runs after a failed gate (gate and register skipped), not after a failure
                trigger_rule="none_failed" if SPECS[name].runs_after_failure else "all_success",
            )
            previous >> task
            previous = task
    return dag


DAG_FILE = '''"""Airflow DAG of the trainpipe pipeline {name!r}, written by `trainpipe airflow dag`.

Tasks: {tasks}.
Each stage task runs `trainpipe stage NAME --run RUN_ID` in its own process. Airflow reads the pipeline
YAML each time it parses this file; edit both freely. Guide: docs/orchestration.md in trainpipe.
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
    """The text of a DAG file for this pipeline. The DAG is built once first, so that a mistake (config,
    DAG id, schedule) is reported now, in one line, rather than as an import error inside Airflow."""
    dag = build_dag(config_path, dag_id=dag_id, schedule=schedule, catchup=catchup)
    return DAG_FILE.format(name=load_config(config_path).name, tasks=" → ".join(dag.task_ids),
                           config=str(Path(config_path).absolute()), dag_id=dag.dag_id, schedule=schedule,
                           catchup=catchup)
