"""`state_dict()`/`load_state_dict()` for the loop's own stateful pieces, and the RNG bundle.

torch's modules, optimizers, schedulers and GradScaler already speak this protocol; the pieces the loop
adds (data cursor, early stopping, counters, RNGs) speak it too, so the Trainer saves and restores every
one of them with the same two lines and a checkpoint is just `{name: piece.state_dict()}`.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Protocol, cast

import numpy as np
import torch


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class AttributeState:
    """state_dict() of the attributes named in `STATE`: the one list of what a piece saves and restores.

    Values must be what `torch.load(weights_only=True)` reads back (tensors, numbers, strings, None, lists,
    dicts), so a checkpoint never executes code.
    """

    STATE: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [name for name in self.STATE if name not in state]
        if missing:
            raise KeyError(f"{type(self).__name__} state lacks {missing}")
        for name in self.STATE:
            setattr(self, name, state[name])


class RngBundle:
    """Every random generator training draws from: python, numpy's legacy global, torch CPU, and CUDA if present.

    Stored as tensors and plain values (numpy's key array as an int64 tensor) for `weights_only` loading.
    """

    def state_dict(self) -> dict[str, Any]:
        legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
        name, keys, pos, has_gauss, cached = legacy
        state: dict[str, Any] = {
            "python": _listify(random.getstate()), "torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)}}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) before a module is built, so initial weights follow the seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _listify(value: Any) -> Any:
    return [_listify(v) for v in value] if isinstance(value, tuple) else value


class LoopCounters(AttributeState):
    """The loop's own running values: optimizer steps, this epoch's sums, the history, bad batches, OOM back-off."""

    STATE = ("step", "sums", "history", "bad_batches", "micro", "accum", "stopped")

    def __init__(self, micro: int, accum: int) -> None:
        self.step = 0
        self.sums = self.zero_sums()
        self.history: dict[str, list[float]] = {}
        self.bad_batches = 0
        self.micro, self.accum = micro, accum  # micro-batch rows and accumulation; OOM halves/doubles them
        self.stopped = False

    @staticmethod
    def zero_sums() -> dict[str, float]:
        return {"loss": 0.0, "rows": 0.0, "norm": 0.0, "steps": 0.0}
