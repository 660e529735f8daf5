"""What `trainpipe run`/`tune` check about tuning before any data is read: the search space against the
family's own parameter check, the sampler, the storage URL's driver, and DDP trials only for a family that
trains under torchrun."""

from __future__ import annotations

from typing import Any

from trainpipe.errors import ConfigError, ModelError
from trainpipe.tuning.search import make_sampler
from trainpipe.tuning.space import family_space
from trainpipe.tuning.study import check_storage_url


def check_space(config: Any) -> None:
    """Every searched name must be a real parameter of the family, at both ends of its range: the family's own
    check runs on the lows (first choices) and on the highs (last choices). Errors name `tuning.space.<param>`.
    Also the sampler and the storage URL's driver, so that nothing fails after data was read."""
    from trainpipe.models import get_family
    from trainpipe.models.base import trains_under_torchrun

    space = family_space(config)
    family = get_family(config.model.type)
    if config.tuning.trial_world_size > 1 and not trains_under_torchrun(family):
        raise ConfigError(f"tuning.trial_world_size: {config.model.type} trains in one process; trials as DDP jobs "
                          "are for the torch families (torch_mlp); set it to 1", key="tuning.trial_world_size")
    for end in (0, -1):
        sample = {}
        for name, spec in space.items():
            if spec.type == "categorical":
                sample[name] = (spec.choices or [None])[end]
            else:
                value = spec.bounds[end]  # low, then high
                sample[name] = int(value) if spec.type == "int" else float(value)
        try:
            family.check_config({**config.model.params, **sample}, config.model.estimator, config.task)
        except ModelError as exc:
            raise _as_space_error(exc, space) from None
    make_sampler(config.tuning, space, 0)  # a missing cmaes, a grid over an unstepped float: now, not after ingest
    if config.tuning.storage:
        check_storage_url(config.tuning.storage)


def _as_space_error(exc: ModelError, space: dict) -> ModelError:
    prefix = "model.params."
    key = exc.key or ""
    name = key.removeprefix(prefix)
    if key.startswith(prefix) and name in space:
        rest = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
        return ModelError(f"tuning.space.{name}: {rest}", key=f"tuning.space.{name}")
    if key == "model.params" and len(space):  # the library refused the sampled combination as a whole
        return ModelError(f"tuning.space: {exc.message.split(': ', 1)[-1]}", key="tuning.space")
    return exc
