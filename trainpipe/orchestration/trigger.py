"""What a DAG run becomes for trainpipe: a run id, and `--set` overrides from its trigger parameters.

Pure functions with no orchestrator import: the DAG renders them into each task's command, and the
first task (`trainpipe airflow prepare`) checks them in its own process.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from typing import Any

import yaml

from trainpipe.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_RUN_ID = 64  # trainpipe run ids: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
_DIGEST = 8


def run_id_for(dag_id: str, dag_run_id: str) -> str:
    """The trainpipe run id of one DAG run: readable, valid, and the same every time that DAG run is retried.

    Airflow run ids (`manual__2026-11-30T11:49:59.773167+00:00`) hold characters a run id may not, and a
    scheduled run of two DAGs can share one; the short digest of both keeps the ids apart after cleaning.
    """
    digest = hashlib.sha256(f"{dag_id}\0{dag_run_id}".encode()).hexdigest()[:_DIGEST]
    readable = _UNSAFE.sub("-", f"{dag_id}-{dag_run_id}").lstrip("-._")
    readable = readable[: _MAX_RUN_ID - _DIGEST - 1].rstrip("-.")
    return f"{readable}-{digest}" if readable else digest


def _flatten(conf: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested parameters ({"model": {"params": {"max_depth": 2}}}) set single keys, as dotted ones do."""
    items: list[tuple[str, Any]] = []
    for key, value in conf.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{dotted}.")
        else:
            items.append((dotted, value))
    return items


def _yaml_text(value: Any) -> str:
    """The text that `--set` parses back (as YAML) to this JSON value with its type: 1e-07 stays a float
    (PyYAML writes 1.0e-07; JSON's 1e-07 would read back as a string), "8" stays a string."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def conf_overrides(conf: dict | None) -> list[str]:
    """`key=value` items for `--set`, one per (flattened) key of a DAG run's conf."""
    return [f"{key}={_yaml_text(value)}" for key, value in _flatten(conf or {})]


def set_args(conf: dict | None) -> str:
    """The shell-quoted `--set ...` arguments for a task's command line (empty without conf)."""
    return "".join(f" --set {shlex.quote(item)}" for item in conf_overrides(conf))


def check_trigger_overrides(overrides: list[str]) -> None:
    """Trigger parameters come from whoever may trigger the DAG: they may not read the worker's environment
    through `${oc.env:...}` interpolation (the resolved config is logged to MLflow)."""
    for item in overrides:
        key, _, value = item.partition("=")
        if "${" in value:
            raise ConfigError(f"dag_run.conf: {key}: ${{...}} interpolation is not allowed in trigger "
                              f"parameters (got {value!r}); put it in the YAML file instead", key=key)
