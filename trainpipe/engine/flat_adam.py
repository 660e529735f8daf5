"""torch's fused Adam(W) for the loop's one flat parameter buffer, without the per-call bookkeeping.

Why by hand: `torch.optim.Adam(fused=True).step()` spends ~27 µs a call on this CPU before and around its one
fused kernel (~11 µs for the 50k-weight MLP of benchmarks/bench_engine.py): grouping tensors by device and dtype,
state checks, the complex/sparse/capturable branches. With the loop's FlatParameters there is one parameter in one
group, so once the state exists that work decides nothing; at a ~1.1 ms bf16 step it is ~1.5% of the step. This
subclass calls the same kernel with the same arguments (bit-identical weights and state, tested against
torch.optim.Adam/AdamW) and leaves every other case (first step, several parameters, closures, a GradScaler's
arguments, amsgrad, maximize, tensor learning rates) to torch's own `step`. Its state_dict is Adam's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class OneBufferAdam(torch.optim.Adam):
    """torch.optim.Adam (fused) or, `decoupled=True`, AdamW: the same optimizer, a shorter path for one buffer."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, weight_decay: float = 0.0,
                 decoupled: bool = False) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, fused=True, decoupled_weight_decay=decoupled)

    def _one_buffer(self) -> tuple[torch.Tensor, dict[str, Any], dict[str, Any]] | None:
        if len(self.param_groups) != 1 or len(self.param_groups[0]["params"]) != 1:
            return None
        group = self.param_groups[0]
        param = group["params"][0]
        state = self.state.get(param)
        if (not state or "step" not in state or param.grad is None or param.grad.is_sparse or group["amsgrad"]
                or group["maximize"] or group["capturable"] or group["differentiable"]
                or not isinstance(group["lr"], float) or torch.is_complex(param)):
            return None
        return param, group, state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        found = None if closure is not None or kwargs else self._one_buffer()
        if found is None:
            return super().step(closure, **kwargs)
        param, group, state = found
        state["step"] += 1  # torch's _foreach_add_(state_steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel([param], [param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
               amsgrad=False, lr=group["lr"], beta1=float(beta1), beta2=float(beta2),
               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        return None
