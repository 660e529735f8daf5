"""Parameters and gradients as views of two contiguous buffers, so the optimizer steps one tensor; the gradient norm.

Why: on this CPU a fused Adam step over a small MLP's 8 parameter tensors cost about twice the same step over one
tensor holding all their values (per-tensor dispatch and one parallel region per tensor: 118 → 50 µs a step on
one thread, 196 → 99 µs on two, MLP [256,128,64]), and zeroing the gradients becomes one fill. The optimizer's
math is element-wise, so the weights are those of the per-tensor step bit for bit (tests/unit/engine/test_flat.py);
the gradient norm is still taken per parameter (over the views), so it too is unchanged to the last bit.
This is the flat-buffer layout of apex's and DeepSpeed's fused optimizers, kept to the loop's own steps: the
module keeps its parameters (views while training, their own storage again after `release`).

What a checkpoint holds does not change: `FlatOptimizerState.state_dict` splits the optimizer's flat state back
into one entry per parameter, and `load_state_dict` joins such entries, so checkpoints resume across both layouts.
A parameter that gets no gradient in a step counts as a zero gradient (its moments decay) where per-tensor Adam
would skip it; every trainable parameter of trainpipe's models takes part in every forward pass.
"""

from __future__ import annotations

from typing import Any

import torch


class FlatParameters:
    """`params` rebased onto one buffer (`flat`, an nn.Parameter the optimizer steps) and their `.grad` onto
    another (`grad`, which is `flat.grad`), which backward accumulates into in place; `zero_grad` clears it, never
    to None."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        with torch.no_grad():
            self.flat = torch.nn.Parameter(torch.cat([q.detach().reshape(-1) for q in params]))
        self.grad = self.flat.grad = torch.zeros_like(self.flat)
        self.spans: list[tuple[int, int]] = []
        offset = 0
        for q in params:
            self.spans.append((offset, q.numel()))
            q.data = self.flat.data[offset:offset + q.numel()].view_as(q)
            q.grad = self.grad[offset:offset + q.numel()].view_as(q)
            offset += q.numel()

    @classmethod
    def of(cls, params: list[torch.nn.Parameter]) -> FlatParameters | None:
        """Flattened when they can share one buffer: dense floating-point tensors of one device and dtype."""
        kinds = {(q.device, q.dtype) for q in params}
        if len(kinds) != 1 or not all(q.layout == torch.strided and q.dtype.is_floating_point for q in params):
            return None
        return cls(params)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def release(self) -> None:
        """Give every parameter its own storage again (after training: the module is saved and used alone)."""
        with torch.no_grad():
            for q in self.params:
                q.data = q.data.clone()
                q.grad = None

    def split(self, value: torch.Tensor, index: int) -> torch.Tensor:
        start, size = self.spans[index]
        return value[start:start + size].view_as(self.params[index]).clone()


class FlatOptimizerState:
    """The checkpoint face of an optimizer over `FlatParameters.flat`: per-parameter state, as a per-tensor
    optimizer of the same parameters would save it (tensors of the flat size are split; scalars such as Adam's
    `step` are repeated)."""

    def __init__(self, optimizer: torch.optim.Optimizer, flat: FlatParameters) -> None:
        self.optimizer, self.flat = optimizer, flat

    def state_dict(self) -> dict[str, Any]:
        saved = self.optimizer.state_dict()
        count, total = len(self.flat.params), self.flat.flat.numel()
        state = {}
        for i in range(count) if saved["state"] else ():
            state[i] = {key: self.flat.split(value, i) if _whole(value, total) else _copy(value)
                        for key, value in saved["state"][0].items()}
        return {"state": state, "param_groups": [{**group, "params": list(range(count))}
                                                 for group in saved["param_groups"]]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Join per-parameter state; ValueError (the trainer's 'does not fit this model') when it cannot be."""
        params, per_param = self.flat.params, state["state"]
        if len(state["param_groups"]) != 1 or len(state["param_groups"][0]["params"]) != len(params):
            raise ValueError(f"optimizer state for {sum(len(g['params']) for g in state['param_groups'])} parameters, "
                             f"the model has {len(params)}")
        ids = state["param_groups"][0]["params"]
        joined: dict[str, Any] = {}
        if per_param:
            if any(i not in per_param for i in ids):
                raise ValueError("optimizer state for only some parameters")
            first = per_param[ids[0]]
            for key, value in first.items():
                if isinstance(value, torch.Tensor) and value.shape == params[0].shape and value.dim() > 0:
                    parts = [per_param[i][key] for i in ids]
                    if any(part.shape != q.shape for part, q in zip(parts, params)):
                        raise ValueError(f"optimizer state {key!r} has other shapes than the parameters")
                    joined[key] = torch.cat([part.reshape(-1) for part in parts])
                else:
                    joined[key] = value
        self.optimizer.load_state_dict({"state": {0: joined} if joined else {},
                                        "param_groups": [{**state["param_groups"][0], "params": [0]}]})


def _whole(value: Any, total: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == total


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def grad_norm(grads: list[torch.Tensor], clip: float | None) -> torch.Tensor:
    """The global gradient norm, gradients scaled down to `clip` when above it. Sparse gradients (id embeddings,
    engine/sparse_adam.py) count by their values: torch's get_total_norm/clip_grad_norm_ refuse them."""
    parts = [g.coalesce().values() if g.is_sparse else g for g in grads]
    if len(parts) == 1:
        norm = torch.linalg.vector_norm(parts[0])
    elif len({(g.device, g.dtype) for g in parts}) == 1:
        # the same value get_total_norm computes for one device and dtype, without the cost of its grouping
        # (~0.2 ms a step: 5% of a small MLP's step on this CPU)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(parts)))
    else:
        norm = torch.nn.utils.get_total_norm(parts)
    if clip:
        factor = torch.clamp(clip / (norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(factor)
    return norm
