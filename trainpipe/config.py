"""The whole YAML as frozen pydantic models: load, interpolate, override, validate, hash.

Sections are defined next to the code that consumes them; this module only assembles them and
turns pydantic's errors into one line each, naming the key path (with a did-you-mean).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from trainpipe.data.drift import DriftConfig
from trainpipe.data.features import FeaturesConfig
from trainpipe.data.io import DataConfig
from trainpipe.data.schema import SchemaConfig
from trainpipe.data.split import SplitConfig
from trainpipe.data.stream_read import streaming_blockers
from trainpipe.errors import ConfigError
from trainpipe.evaluation.gates import GatesConfig, config_problems
from trainpipe.evaluation.metrics import METRICS, EvaluationConfig, primary_metric
from trainpipe.hashing import canonical_hash
from trainpipe.monitoring.cost import BudgetConfig, CostConfig, budget_problems
from trainpipe.models import (RANKING_FAMILIES, ModelConfig, TrainingConfig, can_stream, family_names, is_family,
                              is_ranking_family)
from trainpipe.models.gbdt_dask import dask_problems
from trainpipe.monitoring.alerts import AlertsConfig
from trainpipe.monitoring.health import HealthConfig
from trainpipe.monitoring.system_metrics import SystemMetricsConfig
from trainpipe.orchestration.config import OrchestrationConfig
from trainpipe.ranking.config import RankingConfig, config_problems as ranking_problems
from trainpipe.redaction import NAME_KEYED_MAPS, credential_values, env_sources, redact_config
from trainpipe.registry.client import RegistryConfig
from trainpipe.reports.config import ReportConfig
from trainpipe.tracking.config import TrackingConfig
from trainpipe.tuning.config import TuningConfig, tuning_problems
from trainpipe.yamlfile import describe_yaml_error, load_yaml

Task = Literal["binary", "multiclass", "regression", "ranking"]



class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field("trainpipe", description="Pipeline name; the default MLflow experiment.")
    task: Task = Field(description="binary, multiclass, regression or ranking (docs/ranking.md).")
    seed: int = Field(42, description="Seeds the split and the model.")
    store: str | None = Field(None, description="Local store folder; default $TRAINPIPE_HOME or ./.trainpipe.")
    data: DataConfig
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    split: SplitConfig = Field(default_factory=SplitConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    ranking: RankingConfig | None = Field(None, description="task ranking: interaction columns, splits, K, baselines.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    system_metrics: SystemMetricsConfig = Field(default_factory=SystemMetricsConfig)

    # Where the values came from (set by config_from_dict): key paths of values read from environment
    # variables, with their `${oc.env:...}` expression, and the folder relative paths resolved against.
    _env_sources: dict = PrivateAttr(default_factory=dict)
    _config_dir: str | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _ranking_model_default(cls, doc: Any) -> Any:
        """`task: ranking` with no `model.type` means two_tower (the default, xgboost, cannot rank)."""
        if isinstance(doc, dict) and doc.get("task") == "ranking":
            model = doc.get("model") or {}
            if isinstance(model, dict) and "type" not in model:
                doc = {**doc, "model": {**model, "type": "two_tower"}}
        return doc

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        if not is_family(self.model.type):
            names = family_names()
            close = difflib.get_close_matches(self.model.type, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"model.type: unknown model type {self.model.type!r}{hint}; choose one of {names}")
        if (self.task == "ranking") != is_ranking_family(self.model.type):
            raise ValueError(f"model.type: {self.model.type} cannot do task {self.task}; task ranking takes "
                             f"{', '.join(sorted(RANKING_FAMILIES))}, other tasks any other family"
                             + ("" if "model" in self.model_fields_set else " (set model.type)"))
        problems = dask_problems(self.model.type, self.training)  # which families train on Dask, and the extra
        if problems:
            raise ValueError(problems[0])
        if budget_problems(self.budget, self.cost):
            raise ValueError(budget_problems(self.budget, self.cost)[0])
        if self.data.streaming == "on":  # what needs the table in memory (docs/distributed.md)
            streaming = streaming_blockers(self.task, can_stream(self.model.type), self.model.type,
                                           self.tuning.enabled, self.split.strategy, self.drift.max_rows)
            if streaming:
                raise ValueError(streaming[0])
        if self.task == "ranking" or self.ranking is not None:
            problems = ranking_problems(self) if self.task == "ranking" else [
                f"ranking: only used by task ranking (task is {self.task}); remove the section"]
            if problems:
                raise ValueError(problems[0])
            return self
        if self.data.target is None:
            raise ValueError(f"data.target: missing; task {self.task} needs the label column")
        if self.data.target in self.features.drop or self.data.target in self.features.passthrough:
            raise ValueError(f"features: the target {self.data.target!r} cannot be a feature or dropped")
        known = METRICS[self.task]
        if self.evaluation.primary_metric and self.evaluation.primary_metric not in known:
            close = difflib.get_close_matches(self.evaluation.primary_metric, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"evaluation.primary_metric: {self.evaluation.primary_metric!r} is not a {self.task} "
                             f"metric{hint}; choose one of {', '.join(known)}")
        if self.split.strategy == "stratified" and self.task == "regression":
            raise ValueError("split.strategy: stratified needs a classification task; use random for regression")
        problems = config_problems(self.task, self.gates, primary_metric(self.task, self.evaluation)[0])
        problems += tuning_problems(self.task, self.tuning, METRICS)
        if problems:
            raise ValueError(problems[0])
        return self

    def to_dict(self) -> dict:
        """Every real value, secrets included: what the run itself uses. Never write this anywhere."""
        return self.model_dump(mode="json", by_alias=True)

    def recorded_dict(self) -> dict:
        """What may be written down (run folder, MLflow, job files): secrets redacted (trainpipe/redaction.py)."""
        return redact_config(self.to_dict(), self._env_sources, NAME_KEYED_MAPS)

    def hashed_dict(self) -> dict:
        """What the config hash and cache keys cover: no credential, so rotating a password changes neither."""
        return redact_config(self.to_dict(), self._env_sources, NAME_KEYED_MAPS, for_hash=True)

    def credentials(self) -> list[str]:
        """The real credential values, for scrubbing free text (error messages) before it is recorded."""
        return credential_values(self.to_dict(), self._env_sources, NAME_KEYED_MAPS)

    @property
    def config_dir(self) -> str | None:
        return self._config_dir

    def hashed_section(self, dotted: str) -> Any:
        value: Any = self.hashed_dict()
        for part in dotted.split("."):
            value = value[part]
        return value


def config_hash(config: PipelineConfig) -> str:
    return canonical_hash(config.hashed_dict())


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Names accepted at a location in the model tree (aliases where set)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return None


def format_validation_errors(exc: ValidationError, source: str) -> ConfigError:
    lines, first_key = [], None
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if not isinstance(p, int) or True)
        loc = tuple(p for p in loc if p not in ("str", "list[str]", "literal['auto']"))
        key = ".".join(loc) if loc else "(top level)"
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            options = _fields_at(PipelineConfig, loc[:-1]) or []
            close = difflib.get_close_matches(loc[-1], options, n=1)
            hint = f" (did you mean {'.'.join(loc[:-1] + (close[0],))!r}?)" if close else ""
            line = f"{source}: unknown key {key!r}{hint}"
        elif kind == "missing":
            line = f"{source}: missing required key {key!r}"
        elif kind == "value_error" and ":" in msg and not loc:
            key = msg.split(":", 1)[0].strip()
            line = f"{source}: {msg}"
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            line = f"{source}: {key}: {msg}{shown}"
        lines.append(line)
        first_key = first_key or key
    unique = list(dict.fromkeys(lines))
    return ConfigError(unique[0] if len(unique) == 1 else f"{len(unique)} problems in {source}: " + "; ".join(unique),
                       key=first_key, lines=unique)


YAML_STRUCTURE = set('[]{}"\'')


def parse_override(item: str) -> tuple[str, Any]:
    """`key.path=value`, the value parsed as YAML. Text YAML cannot parse stays text (`*.csv`, `@team`) unless
    it looks like YAML structure (brackets, braces, quotes or `key: value`): `x=[1,` is a typo, not a string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value", key=item)
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        if YAML_STRUCTURE & set(raw) or ": " in raw or raw.rstrip().endswith(":"):
            shown = key.strip() if key.strip().isprintable() else "KEY"  # the error stays one line
            raise ConfigError(f"--set {item!r}: the value is not valid YAML{describe_yaml_error(exc)}; quote it "
                              f"to pass text: --set '{shown}=\"...\"'", key=key.strip()) from exc
        value = raw
    return key.strip(), value


def _set_dotted(doc: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = doc
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _interpolate(doc: dict, source: str) -> dict:
    """`${oc.env:VAR}` / `${oc.env:VAR,default}` and `${key.path}` references, via OmegaConf."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        resolved = OmegaConf.to_container(OmegaConf.create(doc), resolve=True)
        assert isinstance(resolved, dict)  # a mapping in, a mapping out
        return resolved
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        detail = str(exc).splitlines()[0]
        # a key may hold a line break (YAML allows any text as a key): escaped, so the error stays one line
        shown = key if not key or key.isprintable() else repr(key)[1:-1]
        raise ConfigError(f"{source}: {shown + ': ' if shown else ''}{detail}", key=key) from exc


def _resolve_paths(doc: dict, base: Path) -> None:
    """Relative paths in the config are relative to the config file, not the working directory."""
    def fix(value: Any) -> Any:
        if not isinstance(value, str) or "://" in value or os.path.isabs(value):
            return value
        return str((base / value).resolve()) if not any(c in value for c in "*?[") else str(base / value)

    if isinstance(doc.get("data"), dict) and "path" in doc["data"]:
        doc["data"]["path"] = fix(doc["data"]["path"])
    if isinstance(doc.get("schema"), dict) and doc["schema"].get("path"):
        doc["schema"]["path"] = fix(doc["schema"]["path"])
    if doc.get("store") and isinstance(doc["store"], str):  # anything else is the model's to refuse, naming `store`
        doc["store"] = fix(os.path.expanduser(doc["store"]))
    for table in ("user_features", "item_features"):
        ranking = doc.get("ranking")
        if isinstance(ranking, dict) and isinstance(ranking.get(table), dict) and ranking[table].get("path"):
            ranking[table]["path"] = fix(ranking[table]["path"])


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}", key=None)
    if path.is_dir():
        raise ConfigError(f"config path {path} is a folder; pass the pipeline YAML file", key=None)
    try:
        doc = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML{describe_yaml_error(exc)}", key=None) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a text file", key=None) from exc
    if doc is None:
        raise ConfigError(f"{source}: the config file is empty", key=None)
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(doc).__name__}")
    return config_from_dict(doc, source=source, base=path.resolve().parent, overrides=overrides)


def config_from_dict(doc: dict, source: str = "config", base: Path | None = None,
                     overrides: list[str] | None = None) -> PipelineConfig:
    doc = json.loads(json.dumps(doc, default=str))  # a private deep copy with plain types
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(doc, key, value)
    raw = json.loads(json.dumps(doc))
    doc = _interpolate(doc, source)
    env = env_sources(raw, doc)
    base = base or Path.cwd()
    _resolve_paths(doc, base)
    try:
        config = PipelineConfig.model_validate(doc)
    except ValidationError as exc:
        raise format_validation_errors(exc, source) from None
    config._env_sources = env
    config._config_dir = str(base)
    return config


def dump_config(config: PipelineConfig) -> str:
    """The config as written to the run folder: secrets redacted, environment values as their expression."""
    return yaml.safe_dump(config.recorded_dict(), sort_keys=False, allow_unicode=True)
