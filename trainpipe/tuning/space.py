"""Search spaces: one YAML entry per model parameter, checked before any data is read, sampled per trial.

    learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
    max_depth:     {type: int, low: 3, high: 10}
    booster:       {type: categorical, choices: [gbtree, dart]}
    rate_drop:     {type: float, low: 0.0, high: 0.3, when: {booster: dart}}

`when` makes a parameter conditional on a categorical one: it is sampled only when that parameter took
one of the given values, otherwise the family's default applies.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainpipe.errors import ConfigError


class ParamSpec(BaseModel):
    """One searched parameter (`tuning.space.<name>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "categorical"] = Field(description="int, float or categorical.")
    low: float | None = Field(None, description="int/float: smallest value.")
    high: float | None = Field(None, description="int/float: largest value (inclusive).")
    log: bool = Field(False, description="int/float: sample uniformly in log space (needs low > 0).")
    step: float | None = Field(None, gt=0, description="int/float: grid step (not with log).")
    choices: list[Any] | None = Field(None, description="categorical: the values (lists allowed, e.g. hidden_dims).")
    when: dict[str, Any] | None = Field(None, description="Sample only when another (categorical) parameter took "
                                        "this value or one of these values: {booster: dart}.")

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("choices: a categorical parameter needs a non-empty list of choices")
            if self.low is not None or self.high is not None:
                raise ValueError("low/high: not used by a categorical parameter (give choices)")
            return self
        if self.choices is not None:
            raise ValueError(f"choices: only for type categorical, not {self.type}")
        if self.low is None or self.high is None:
            raise ValueError(f"low/high: a {self.type} parameter needs both")
        if self.low >= self.high:
            raise ValueError(f"low must be below high (got low={self.low:g}, high={self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: a log range needs low > 0 (got low={self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("step: cannot be combined with log")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"low/high: an int parameter needs whole numbers (got {self.low:g}, {self.high:g})")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of an int or float parameter (both set: the validator checked)."""
        assert self.low is not None and self.high is not None, "int/float parameters have low and high"
        return self.low, self.high


def check_conditions(space: dict[str, ParamSpec]) -> list[str]:
    """`when` must name a categorical parameter of the space and values among its choices; no cycles."""
    problems = []
    for name, spec in space.items():
        for other, wanted in (spec.when or {}).items():
            if other not in space:
                problems.append(f"tuning.space.{name}.when: {other!r} is not a parameter of the search space")
            elif space[other].type != "categorical":
                problems.append(f"tuning.space.{name}.when: {other!r} must be categorical to condition on it")
            else:
                values = wanted if isinstance(wanted, list) else [wanted]
                missing = [v for v in values if v not in (space[other].choices or [])]
                if missing:
                    problems.append(f"tuning.space.{name}.when: {missing[0]!r} is not one of {other}'s choices "
                                    f"{space[other].choices}")
    if not problems:
        try:
            sampling_order(space)
        except ConfigError as exc:
            problems.append(exc.message)
    return problems


def sampling_order(space: dict[str, ParamSpec]) -> list[str]:
    """Parameters ordered so that every condition is sampled before the parameters that depend on it."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ConfigError(f"tuning.space.{name}.when: conditions form a cycle", key=f"tuning.space.{name}")
        visiting.add(name)
        for other in (space[name].when or {}):
            if other in space:
                visit(other)
        visiting.discard(name)
        order.append(name)

    for name in space:
        visit(name)
    return order


def _encoded(choices: list | None) -> tuple[list, dict]:
    """Optuna stores only None/bool/int/float/str choices: other values (lists) travel as JSON text."""
    choices = choices or []  # a categorical parameter always has choices (the validator checked)
    if all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
        return choices, {}
    codes = {json.dumps(c): c for c in choices}
    return list(codes), codes


def suggest(trial: Any, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample one parameter set; conditional parameters whose condition does not hold are left out."""
    params: dict[str, Any] = {}
    for name in sampling_order(space):
        spec = space[name]
        if spec.when and not all(params.get(k) in (v if isinstance(v, list) else [v]) for k, v in spec.when.items()):
            continue
        if spec.type == "categorical":
            choices, codes = _encoded(spec.choices)
            value = trial.suggest_categorical(name, choices)
            params[name] = codes.get(value, value) if codes else value
        elif spec.type == "int":
            low, high = spec.bounds
            params[name] = trial.suggest_int(name, int(low), int(high), step=int(spec.step or 1), log=spec.log)
        else:
            low, high = spec.bounds
            params[name] = trial.suggest_float(name, low, high, step=spec.step, log=spec.log)
    return params


def decode(space: dict[str, ParamSpec], stored: dict[str, Any]) -> dict[str, Any]:
    """A trial's stored params back to model values (JSON-encoded list choices decoded)."""
    out = {}
    for name, value in stored.items():
        spec = space.get(name)
        if spec is not None and spec.type == "categorical":
            _, codes = _encoded(spec.choices)
            value = codes.get(value, value) if codes else value
        out[name] = value
    return out


def grid(space: dict[str, ParamSpec]) -> dict[str, list]:
    """The grid sampler's value lists: categorical choices, int ranges, stepped float ranges."""
    import numpy as np

    values = {}
    for name, spec in space.items():
        if spec.when:
            raise ConfigError(f"tuning.space.{name}.when: the grid sampler cannot search conditional parameters",
                              key=f"tuning.space.{name}")
        if spec.type == "categorical":
            values[name] = _encoded(spec.choices)[0]
        elif spec.type == "int":
            low, high = spec.bounds
            values[name] = list(range(int(low), int(high) + 1, int(spec.step or 1)))
        elif spec.step is not None:
            low, high = spec.bounds
            values[name] = [float(v) for v in np.arange(low, high + spec.step / 2, spec.step)]
        else:
            raise ConfigError(f"tuning.space.{name}.step: the grid sampler needs a step for float parameters",
                              key=f"tuning.space.{name}")
    return values


def parse_space(raw: dict[str, dict]) -> dict[str, ParamSpec]:
    """A family's default space (plain dicts) as ParamSpecs; problems name the parameter."""
    from pydantic import ValidationError

    out = {}
    for name, spec in raw.items():
        try:
            out[name] = ParamSpec.model_validate(spec)
        except ValidationError as exc:
            raise ConfigError(f"tuning.space.{name}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                              key=f"tuning.space.{name}") from None
    return out


def family_space(config: Any) -> dict[str, ParamSpec]:
    """`tuning.space` if given, else the family's default, narrowed to what the chosen estimator accepts."""
    from trainpipe.models import get_family

    if config.tuning.space:
        return dict(config.tuning.space)
    family = get_family(config.model.type)
    space = parse_space(family.default_search_space(config.task, config.model.estimator))
    space = {k: v for k, v in space.items() if k not in config.model.params}  # a fixed model.params value wins
    if not space:
        raise ConfigError(f"tuning.space: no default search space for {config.model.estimator or config.model.type} "
                          "(or model.params fixes all of it); list the parameters to search in tuning.space",
                          key="tuning.space")
    return space


def fixed_params(config: Any) -> dict[str, Any]:
    """Parameters of the family's default space that `model.params` fixes, so tune does not search them
    (with an explicit `tuning.space` nothing is left out: the searched value wins)."""
    from trainpipe.models import get_family

    if config.tuning.space:
        return {}
    default = get_family(config.model.type).default_search_space(config.task)
    return {name: config.model.params[name] for name in default if name in config.model.params}
