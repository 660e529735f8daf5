"""The optimizer over one flat buffer: the per-tensor optimizer's weights bit for bit, checkpoints that resume
across both layouts, parameters that get their own storage back after training."""

from __future__ import annotations

import pytest

import torch as torch

from trainpipe.engine import flat
from trainpipe.engine.callbacks import Callback
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.flat import FlatParameters
from trainpipe.engine.loop import Trainer
from tests.unit.engine.test_loop import Net, bce, data


class Killed(Exception):
    pass


class Watch(Callback):
    """Records whether each step ran over the flat buffer (one optimizer tensor), and stops at step `kill`."""

    def __init__(self, kill: int | None = None) -> None:
        self.kill, self.flat_steps, self.steps = kill, 0, 0

    def on_step_end(self, trainer) -> None:
        self.steps += 1
        params = trainer.opt.param_groups[0]["params"]
        self.flat_steps += trainer.flat is not None and len(params) == 1 and params[0] is trainer.flat.flat
        if trainer.step == self.kill:
            raise Killed


def fit(params, *, flat_layout: bool, store=None, kill=None, monkeypatch=None) -> tuple[Trainer, Watch]:
    watch = Watch(kill)
    trainer = Trainer(Net(), bce, lambda o, y: {}, params, seed=3, threads=1, store=store,
                      checkpoint=CheckpointConfig(every_steps=3), callbacks=[watch])
    with pytest.MonkeyPatch.context() as patch:
        if not flat_layout:
            patch.setattr(flat.FlatParameters, "of", classmethod(lambda cls, ps: None))
        trainer.fit(*data())
    return trainer, watch


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return list(trainer.module.state_dict().values())


@pytest.mark.parametrize("overrides", [
    {"optimizer": "adam", "weight_decay": 0.01},
    {"optimizer": "adamw", "clip_grad_norm": 0.3},
    {"optimizer": "sgd", "momentum": 0.9, "amp": "bf16"},
])
@pytest.mark.usefixtures("bf16_as_native")
def test_the_flat_buffer_trains_the_per_tensor_optimizers_weights_bit_for_bit(overrides):
    params = EngineParams(epochs=2, batch_size=32, lr=0.05, **overrides)
    flat_run, watch = fit(params, flat_layout=True)
    per_tensor, other = fit(params, flat_layout=False)
    assert watch.flat_steps == watch.steps > 0 and other.flat_steps == 0  # each run took the layout it names
    assert all(torch.equal(a, b) for a, b in zip(weights(flat_run), weights(per_tensor)))
    assert flat_run.history["train_loss"] == per_tensor.history["train_loss"]


def test_checkpoints_resume_across_the_per_tensor_and_flat_layouts(tmp_path):
    """A checkpoint of the per-tensor layout (trainpipe before the flat buffer) resumes in the flat one, and the
    flat run's checkpoints hold the optimizer state per parameter, as the per-tensor layout writes it."""
    params = EngineParams(epochs=3, batch_size=32, lr=0.05, optimizer="adam", schedule="cosine")
    straight, _ = fit(params, flat_layout=True)
    with pytest.raises(Killed):
        fit(params, flat_layout=False, store=CheckpointStore(tmp_path, "h"), kill=7)
    resumed, _ = fit(params, flat_layout=True, store=CheckpointStore(tmp_path, "h"))
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed), weights(straight)))
    flat_state = CheckpointStore.read(sorted(tmp_path.glob("ckpt-*.pt"))[-1])["optimizer"]
    per_tensor, _ = fit(params, flat_layout=False)
    expected = per_tensor.opt.state_dict()
    assert flat_state["param_groups"][0]["params"] == expected["param_groups"][0]["params"] == list(range(4))
    for i, state in expected["state"].items():
        assert all(torch.equal(flat_state["state"][i][key], value) for key, value in state.items()), i


def test_a_checkpoint_of_another_model_is_refused_not_joined(tmp_path):
    params = EngineParams(epochs=1, batch_size=32, optimizer="adam")
    trainer, _ = fit(params, flat_layout=True)
    state = trainer.state_dict()["optimizer"]
    state["state"][1]["exp_avg"] = torch.zeros(3)  # another model's shape
    other = FlatParameters([torch.nn.Parameter(torch.zeros(s)) for s in ((8, 4), (8,), (1, 8), (1,))])
    optimizer = torch.optim.Adam([other.flat])
    with pytest.raises(ValueError, match="other shapes"):
        flat.FlatOptimizerState(optimizer, other).load_state_dict(state)


def test_after_training_every_parameter_has_its_own_storage_again():
    trainer, _ = fit(EngineParams(epochs=1, batch_size=32), flat_layout=True)
    for q in trainer.module.parameters():
        assert q.untyped_storage().nbytes() == q.numel() * q.element_size() and q.grad is None
    assert len(trainer.state_dict()["optimizer"]["state"]) == 4  # still one entry per parameter


def test_parameters_of_mixed_dtypes_or_sparse_layouts_are_not_flattened():
    assert FlatParameters.of([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2).double())]) is None
    assert FlatParameters.of([torch.nn.Parameter(torch.zeros(2, 2).to_sparse())]) is None
