"""bf16 working weights (engine/flat.py WorkingCopy): the same training as torch.autocast's per-step casts, bit for
bit, with float32 weights wherever anything reads the module (checkpoints, validation, hooks, after training)."""

from __future__ import annotations

import pytest

import torch as torch

from trainpipe.engine import flat
from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.callbacks import Callback
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.flat import FlatParameters, WorkingCopy
from trainpipe.engine.layers import PackedDropout
from trainpipe.engine.loop import Trainer

pytestmark = pytest.mark.usefixtures("bf16_as_native")  # bf16's numerics, on any CPU


class Killed(Exception):
    pass


class Tabular(torch.nn.Module):
    """What torch_mlp builds: an id embedding (float32 under autocast), linear layers, batch norm, fast dropout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(6, 3)
        self.net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                       PackedDropout(0.2), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                       PackedDropout(0.2), torch.nn.Linear(8, 1))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.embedding(ids)], dim=1))


def data(n: int = 400) -> tuple[TensorBatches, TensorBatches]:
    g = torch.Generator().manual_seed(1)
    X, ids = torch.randn(n, 4, generator=g), torch.randint(0, 6, (n,), generator=g)
    y = (X[:, 0] + X[:, 1] + (ids % 2) > 0.5).float()
    cut = n * 4 // 5
    return TensorBatches(X[:cut], ids[:cut], y[:cut]), TensorBatches(X[cut:], ids[cut:], y[cut:])


def bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1).float(), y)


class Seen(Callback):
    """Epoch-end view of the run: whether the linear weights read as float32, and whether the twin was used."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.used = False

    def on_epoch_end(self, trainer, values) -> None:
        self.dtypes |= {q.dtype for q in trainer.module.parameters()}
        self.used |= trainer.working is not None


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.step == self.step:
            raise Killed


def fit(params: EngineParams, *, working: bool, store=None, callbacks=(), every=None):
    seen = Seen()
    trainer = Trainer(Tabular(), bce, lambda o, y: {}, params, seed=5, threads=1, store=store,
                      checkpoint=CheckpointConfig(every_steps=every), callbacks=[seen, *callbacks])
    with pytest.MonkeyPatch.context() as patch:
        if not working:
            patch.setattr(flat.WorkingCopy, "of", classmethod(lambda cls, *a: None))
        trainer.fit(*data())
    return trainer, seen


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return list(trainer.module.state_dict().values())


@pytest.mark.parametrize("overrides", [
    {"optimizer": "adam", "weight_decay": 0.01},
    {"optimizer": "adamw", "clip_grad_norm": 0.3, "schedule": "cosine"},
    {"optimizer": "sgd", "momentum": 0.9, "grad_accumulation": 2},
])
def test_bf16_working_weights_train_autocasts_weights_bit_for_bit(overrides):
    params = EngineParams(epochs=3, batch_size=32, lr=0.05, amp="bf16", **overrides)
    twin, seen = fit(params, working=True)
    reference, other = fit(params, working=False)
    assert seen.used and not other.used  # each run took the path it names
    assert seen.dtypes == other.dtypes == {torch.float32}  # what epoch-end readers see
    assert all(torch.equal(a, b) for a, b in zip(weights(twin), weights(reference)))
    assert twin.history == reference.history


def test_only_unshared_linear_parameters_get_a_bf16_twin():
    module = Tabular()
    tied = torch.nn.Linear(3, 6, bias=False)
    tied.weight = module.embedding.weight  # (6, 3): one tensor, read by an embedding and a linear layer
    module.tied = tied
    params = list(module.parameters())
    copy = WorkingCopy.of(FlatParameters(params), module, torch.bfloat16)
    assert copy is not None
    linear = {id(q) for m in module.net if isinstance(m, torch.nn.Linear) for q in m.parameters()}
    assert {id(params[i]) for i in copy.members} == linear  # not the embedding, batch norm or the tied weight


def test_a_bf16_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights_and_saves_float32(tmp_path):
    params = EngineParams(epochs=3, batch_size=32, lr=0.05, amp="bf16", optimizer="adam")
    straight, _ = fit(params, working=True)
    with pytest.raises(Killed):
        fit(params, working=True, store=CheckpointStore(tmp_path, "h"), callbacks=[KillAt(13)], every=4)
    saved = CheckpointStore.read(sorted(tmp_path.glob("ckpt-*.pt"))[-1])["module"]
    assert {value.dtype for value in saved.values() if value.is_floating_point()} == {torch.float32}
    resumed, _ = fit(params, working=True, store=CheckpointStore(tmp_path, "h"), every=4)
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed), weights(straight)))
    assert resumed.history == straight.history


def test_after_a_bf16_run_every_parameter_is_float32_with_its_own_storage():
    trainer, _ = fit(EngineParams(epochs=1, batch_size=32, amp="bf16"), working=True)
    for q in trainer.module.parameters():
        assert q.dtype == torch.float32 and q.grad is None
        assert q.untyped_storage().nbytes() == q.numel() * q.element_size()


def test_with_the_twin_autocast_no_longer_casts_the_linear_weights_every_step():
    """The mechanism the speed comes from: per step, autocast's weight casts (forward) disappear."""
    from torch.profiler import ProfilerActivity, profile

    def casts(working: bool) -> int:
        params = EngineParams(epochs=1, batch_size=32, amp="bf16")  # 10 steps of 32 rows
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(params, working=working)
        return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")

    with_twin, without = casts(True), casts(False)
    # 3 linear layers × (weight, bias): 6 casts a step forward under plain autocast (and 6 more back: 194 against
    # 74 measured), 10 steps
    assert without - with_twin >= 6 * 10
