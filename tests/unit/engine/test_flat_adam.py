"""OneBufferAdam: torch's fused Adam(W) step by a shorter path for one buffer, bit for bit, resumable, and torch's
own step wherever the shortcut does not apply."""

from __future__ import annotations

import pytest
import torch

from trainpipe.engine.config import EngineParams
from trainpipe.engine.flat_adam import OneBufferAdam
from trainpipe.engine.schedules import build_optimizer


def gradients(steps: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=gen) for _ in range(steps)]


def train(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], grads: list[torch.Tensor]) -> None:
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))  # the lr moves every step
    for g in grads:
        for q, part in zip(params, g.split([q.numel() for q in params]), strict=True):
            q.grad = part.view_as(q).clone()
        opt.step()
        schedule.step()


@pytest.mark.parametrize("decoupled", [False, True])
def test_steps_are_torchs_fused_adam_bit_for_bit_and_take_the_short_path(decoupled, monkeypatch):
    start = torch.randn(50)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    reference_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    reference = reference_cls([theirs], lr=0.01, weight_decay=0.1, fused=True)
    opt = OneBufferAdam([ours], lr=0.01, weight_decay=0.1, decoupled=decoupled)
    grads = gradients(6, 50)
    train(reference, [theirs], grads)
    calls = []
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    train(opt, [ours], grads)
    assert torch.equal(ours.detach(), theirs.detach())
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[ours][key], reference.state[theirs][key]), key
    assert len(calls) == 1  # torch's step made the state once; the five after it took the short path


def test_a_resumed_optimizer_continues_exactly_as_the_uninterrupted_one():
    grads = gradients(8, 20)

    def steps(param: torch.nn.Parameter, opt: torch.optim.Optimizer, part: list[torch.Tensor]) -> None:
        for g in part:
            param.grad = g.clone()
            opt.step()

    straight = torch.nn.Parameter(torch.ones(20))
    steps(straight, OneBufferAdam([straight], lr=0.05, decoupled=True), grads)
    first = torch.nn.Parameter(torch.ones(20))
    opt = OneBufferAdam([first], lr=0.05, decoupled=True)
    steps(first, opt, grads[:3])
    resumed = torch.nn.Parameter(first.detach().clone())
    again = OneBufferAdam([resumed], lr=0.05, decoupled=True)
    again.load_state_dict(opt.state_dict())
    steps(resumed, again, grads[3:])
    assert torch.equal(resumed.detach(), straight.detach())


def test_several_parameters_and_closures_go_through_torchs_own_step():
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
    twins = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))]
    grads = gradients(4, 5)
    train(OneBufferAdam(params, lr=0.1), params, grads)
    train(torch.optim.Adam(twins, lr=0.1, fused=True), twins, grads)
    assert all(torch.equal(a.detach(), b.detach()) for a, b in zip(params, twins, strict=True))
    one = torch.nn.Parameter(torch.ones(3))
    opt = OneBufferAdam([one], lr=0.1)

    def closure() -> float:
        one.grad = torch.ones(3)
        return 1.5

    assert opt.step(closure) == 1.5 and opt.step(closure) == 1.5  # the loss comes back, as torch's step gives it


def test_the_loops_flat_buffer_gets_it_and_per_tensor_parameters_keep_torchs_classes():
    module = torch.nn.Linear(3, 2)
    flat = [torch.nn.Parameter(torch.zeros(8))]
    assert type(build_optimizer(module, EngineParams(optimizer="adamw"), torch.device("cpu"), flat)) is OneBufferAdam
    assert type(build_optimizer(module, EngineParams(optimizer="adam"), torch.device("cpu"))) is torch.optim.Adam
