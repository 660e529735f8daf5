"""amp bf16 on a CPU without native bf16 trains in float32 (torch would emulate bf16 ~10× slower), and says so."""

import torch

from trainpipe.engine import precision
from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.config import EngineParams
from trainpipe.engine.loop import Trainer


def fit(amp: str) -> tuple[Trainer, list[torch.dtype]]:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    seen: list[torch.dtype] = []
    module[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype) if module.training else None)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(200, 4, generator=g)
    y = (X[:, 0] > 0).float()
    trainer = Trainer(module, lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), t),
                      lambda out, t: {}, EngineParams(epochs=2, batch_size=32, lr=0.05, amp=amp), seed=0, threads=1)
    trainer.fit(TensorBatches(X[:160], y[:160]), TensorBatches(X[160:], y[160:]))
    return trainer, seen


def test_bf16_on_a_cpu_without_it_trains_the_float32_run_and_warns_once(monkeypatch, capsys):
    monkeypatch.setattr(precision, "bf16_is_native", lambda: False)
    precision._warn_once.cache_clear()
    asked, seen = fit("bf16")
    plain, _ = fit("none")
    assert asked.amp == "none" and set(seen) == {torch.float32}
    assert all(torch.equal(a, b) for a, b in zip(asked.module.parameters(), plain.module.parameters()))
    fit("bf16")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "model.params.amp" in line]
    assert len(warnings) == 1 and "no native bf16" in warnings[0] and "float32" in warnings[0]


def test_bf16_where_the_cpu_has_it_runs_under_autocast(monkeypatch):
    monkeypatch.setattr(precision, "bf16_is_native", lambda: True)
    trainer, seen = fit("bf16")
    assert trainer.amp == "bf16" and torch.bfloat16 in seen


def test_the_choice_depends_on_the_device_and_the_cpu_flag(monkeypatch):
    monkeypatch.setattr(precision, "bf16_is_native", lambda: False)
    assert precision.training_amp("bf16", "cuda") == "bf16"  # CUDA's bf16 is its own matter
    assert precision.training_amp("none", "cpu") == "none"
    assert precision.training_amp("bf16", "cpu") == "none"
