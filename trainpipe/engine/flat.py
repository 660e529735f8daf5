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
        self.grads = [q.grad for q in params]  # the float32 gradient views, whatever the parameters point at

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


class WorkingCopy:
    """bf16 working weights for the linear layers of a bf16-autocast CPU step, beside the float32 master buffer.

    Why: under `torch.autocast` every linear layer's weight and bias is cast to bf16 anew in each forward pass
    (one `_to_copy` each, and one more each way in backward: ~22 small ops a step for a 4-layer MLP, 6-8% of a
    ~1.1 ms bf16 step on this CPU by the profiler). Here the whole master buffer is rounded into a bf16 twin once
    per step (one op) and those layers' parameters point into the twin while a step runs, so autocast finds
    them already in bf16 and casts nothing. The values are those autocast computes, bit for bit: its cast is the
    same round-to-nearest of the same master weights, and the gradient it returns to the float32 weight is the
    bf16 gradient converted exactly, which `fold` copies into the master gradient. The master
    buffer alone is stepped, checkpointed and saved: `leave` points the parameters back at it before anything
    else reads the module (validation, checkpoints, hooks, the end of training).

    Only parameters owned by one `nn.Linear` each qualify (a weight shared with an embedding, which autocast
    leaves in float32, would change its values; engine/matmul.py's small heads compute in float32 anyway), and
    only for single-micro-batch steps: gradients of several micro-batches are accumulated in float32, as
    autocast's are."""

    def __init__(self, flat: FlatParameters, members: list[int], dtype: torch.dtype) -> None:
        self.flat, self.members = flat, members
        self.low = torch.empty(flat.flat.numel(), dtype=dtype, device=flat.flat.device)
        self.grad = torch.zeros_like(self.low)
        self.active = False
        runs: list[list[int]] = []  # the members' spans, adjacent ones merged: one converting copy each to fold
        for start, size in (flat.spans[i] for i in members):
            if runs and runs[-1][1] == start:
                runs[-1][1] = start + size
            else:
                runs.append([start, start + size])
        self.folds = [(flat.grad[a:b], self.grad[a:b]) for a, b in runs]

    @classmethod
    def of(cls, flat: FlatParameters, module: torch.nn.Module, dtype: torch.dtype) -> WorkingCopy | None:
        owners: dict[int, list[torch.nn.Module]] = {}
        for m in module.modules():
            for q in m._parameters.values():
                if q is not None:
                    owners.setdefault(id(q), []).append(m)
        members = [i for i, q in enumerate(flat.params)
                   if len(owners.get(id(q), ())) == 1 and isinstance(owners[id(q)][0], torch.nn.Linear)
                   and not getattr(owners[id(q)][0], "float32_under_autocast", False)]  # engine/matmul.py
        return cls(flat, members, dtype) if members else None

    def enter(self) -> None:
        """Before a step: the linear layers' parameters become views of the (freshly rounded) twin."""
        if self.active:
            return
        self.active = True
        self.sync()
        self._point(self.low, self.grad)

    def leave(self) -> None:
        """The parameters are views of the master buffer again (what validation, checkpoints and hooks read)."""
        if not self.active:
            return
        self._point(self.flat.flat.data, self.flat.grad)
        self.active = False

    def fold(self) -> None:
        """After backward: the members' gradients into the master gradient (exact: bf16 → float32 is lossless).
        A converting copy per run of adjacent members (~5 µs for the benchmark's MLP, one run), not an add of the
        whole twin (a mixed-dtype add: ~22 µs). Nothing when the step did not run on the twin."""
        if not self.active:
            return
        for master, twin in self.folds:
            master.copy_(twin)

    def sync(self) -> None:
        """After the optimizer stepped the master buffer: round it into the twin for the next step (while the
        parameters point at the twin; `enter` rounds it otherwise)."""
        if not self.active:
            return
        with torch.no_grad():
            self.low.copy_(self.flat.flat)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def _point(self, values: torch.Tensor, grads: torch.Tensor) -> None:
        for i in self.members:
            q, (start, size) = self.flat.params[i], self.flat.spans[i]
            q.grad = None  # a gradient of the old dtype cannot stay on a parameter of the new one
            q.data = values[start:start + size].view_as(q)
            q.grad = grads[start:start + size].view_as(q)
