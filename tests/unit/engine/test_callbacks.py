"""Callbacks: loaded from import paths with one-line errors, called at each hook, able to stop training."""

from __future__ import annotations

import textwrap

import pytest

import torch as torch

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.callbacks import load_callbacks
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.fit import fit_torch
from trainpipe.errors import ConfigError
from trainpipe.models.base import FitContext

USER_MODULE = '''
class Recorder:
    """Records every hook call; stops after epoch `STOP_AFTER` (0-based)."""
    calls = []
    STOP_AFTER = 1

    def on_step_end(self, trainer):
        Recorder.calls.append(("step", trainer.epoch, trainer.step))

    def on_epoch_end(self, trainer, values):
        Recorder.calls.append(("epoch", trainer.epoch, sorted(values)))
        return trainer.epoch == Recorder.STOP_AFTER

    def on_checkpoint(self, trainer, path):
        Recorder.calls.append(("checkpoint", trainer.step, path.name))


class OnlyStep:
    def on_step_end(self, trainer):
        pass


class NoHooks:
    pass


class NeedsArgs:
    def __init__(self, x):
        pass

    def on_step_end(self, trainer):
        pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_callbacks.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    sys.modules.pop("user_callbacks", None)
    module = importlib.import_module("user_callbacks")
    module.Recorder.calls.clear()
    return module


@pytest.mark.parametrize("path, message", [
    ("user_callbacks", "training.callbacks[1]: 'user_callbacks' is not an import path like mypackage.callbacks:MyCallback"),
    ("no_such_module:Thing", "training.callbacks[1]: cannot import module 'no_such_module'"),
    ("user_callbacks:Missing", "training.callbacks[1]: module 'user_callbacks' has no attribute 'Missing'"),
    ("user_callbacks:NoHooks", "training.callbacks[1]: user_callbacks:NoHooks has none of the callback methods"),
    ("user_callbacks:NeedsArgs", "training.callbacks[1]: user_callbacks:NeedsArgs could not be constructed"),
])
def test_a_bad_callback_path_is_one_line_naming_its_position(user_module, path, message):
    with pytest.raises(ConfigError) as err:
        load_callbacks(["user_callbacks:OnlyStep", path])
    assert err.value.message.startswith(message) and "\n" not in err.value.message
    assert err.value.key == "training.callbacks[1]"


def test_dotted_and_colon_paths_load_the_same_class(user_module):
    a, b = load_callbacks(["user_callbacks:OnlyStep", "user_callbacks.OnlyStep"])
    assert type(a) is type(b) is user_module.OnlyStep


def test_user_callbacks_from_the_fit_context_see_every_hook_and_can_stop(user_module, tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g)
    y = (X[:, 0] > 0).float()
    params = EngineParams(epochs=5, batch_size=40)
    context = FitContext(checkpoint_dir=tmp_path / "ckpt", checkpoint=CheckpointConfig(every_steps=2),
                         config_hash="h", callbacks=["user_callbacks:Recorder"])
    module, result = fit_torch(lambda: torch.nn.Linear(3, 1),
                               lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), t),
                               lambda out, t: {}, params, TensorBatches(X[:80], y[:80]), TensorBatches(X[80:], y[80:]),
                               seed=0, threads=1, options=context, patience=None)
    calls = user_module.Recorder.calls
    assert result.epochs == 2 and result.stopped_early  # Recorder asked to stop after epoch index 1
    assert [c for c in calls if c[0] == "step"] == [("step", 0, 1), ("step", 0, 2), ("step", 1, 3), ("step", 1, 4)]
    epochs = [c for c in calls if c[0] == "epoch"]
    assert [c[1] for c in epochs] == [0, 1] and {"train_loss", "validation_loss", "lr"} <= set(epochs[0][2])
    # every_steps 2 → steps 2 and 4, plus each epoch end (also step 2 and 4: written again, announced again)
    assert [c[1:] for c in calls if c[0] == "checkpoint"] == [(2, "ckpt-000000002.pt")] * 2 + [(4, "ckpt-000000004.pt")] * 2
    assert CheckpointStore(tmp_path / "ckpt", "h").steps() == [2, 4]
    assert not module.training  # handed back in eval mode


def test_a_spent_budget_stops_torch_training_after_a_checkpoint_with_the_budget_key(tmp_path):
    from trainpipe.errors import BudgetExceeded
    from trainpipe.monitoring.cost import BudgetStop, Usage

    polls = []

    def budget():  # BudgetChecker.poll's answer: spent from the 3rd optimizer step on
        polls.append(1)
        return BudgetStop("budget.max_minutes", "budget.max_minutes 1 reached after 1.0 minutes ($0.0000 spent)",
                          Usage(60.0), 0.0) if len(polls) >= 3 else None

    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g)
    y = (X[:, 0] > 0).float()
    context = FitContext(checkpoint_dir=tmp_path / "ckpt", config_hash="h", budget=budget)
    with pytest.raises(BudgetExceeded) as stopped:
        fit_torch(lambda: torch.nn.Linear(3, 1), lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(
            out.squeeze(1), t), lambda out, t: {}, EngineParams(epochs=5, batch_size=20), TensorBatches(X, y),
            TensorBatches(X[:20], y[:20]), seed=0, threads=1, options=context, patience=None)
    assert stopped.value.key == "budget.max_minutes" and "\n" not in stopped.value.message
    assert "training stopped at epoch 1 step 3 after a checkpoint" in stopped.value.message
    latest = CheckpointStore(tmp_path / "ckpt", "h", 2).latest()
    assert latest is not None and latest["loop"]["step"] == 3  # nothing trained is lost: resume continues here


class Recording:
    """An IterationWatch that keeps what it is told."""

    def __init__(self, spec):
        self.spec, self.seen = spec, []

    def observe(self, epoch, values, rows_per_s=None):
        self.seen.append((epoch, dict(values), rows_per_s))


def test_the_fit_contexts_watcher_sees_each_epochs_values_gradient_norm_and_throughput():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g)
    y = (X[:, 0] > 0).float()
    made = []

    def factory(spec):
        made.append(Recording(spec))
        return made[-1]

    params = EngineParams(epochs=3, batch_size=40, monitor="validation_loss", mode="min")
    fit_torch(lambda: torch.nn.Linear(3, 1),
              lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), t),
              lambda out, t: {}, params, TensorBatches(X[:80], y[:80]), TensorBatches(X[80:], y[80:]),
              seed=0, threads=1, options=FitContext(watch=factory), patience=None)
    (watch,) = made
    assert (watch.spec.monitor, watch.spec.mode, watch.spec.loss, watch.spec.grad_norm, watch.spec.unit) == (
        "validation_loss", "min", "train_loss", "train_grad_norm", "epoch")
    assert [epoch for epoch, _, _ in watch.seen] == [0, 1, 2]
    for _, values, rows_per_s in watch.seen:
        assert {"train_loss", "train_grad_norm", "validation_loss"} <= set(values) and values["train_grad_norm"] > 0
        assert rows_per_s is not None and rows_per_s > 0  # 80 rows over the epoch's measured seconds
