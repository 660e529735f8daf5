"""The loop in-process: exact resume for every schedule and optimizer, OOM back-off, NaN handling."""

from __future__ import annotations

import numpy as np
import pytest

import torch as torch

from trainpipe.engine.batches import TensorBatches, as_tensor
from trainpipe.engine.callbacks import Callback
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.layers import PackedDropout
from trainpipe.engine.loop import Trainer, TrainingDiverged


class Killed(Exception):
    pass


def data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).float()
    return TensorBatches(X[:240], y[:240]), TensorBatches(X[240:], y[240:])


class Net(torch.nn.Module):
    def __init__(self, fail_above: int | None = None, packed_dropout: bool = False):
        super().__init__()
        torch.manual_seed(0)
        dropout = PackedDropout(0.2) if packed_dropout else torch.nn.Dropout(0.2)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), dropout, torch.nn.Linear(8, 1))
        self.fail_above = fail_above

    def forward(self, x):
        if self.fail_above is not None and self.training and len(x) > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return self.net(x)


def bce(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)


def trainer(params, store=None, every=None, callbacks=None, module=None, patience=None):
    return Trainer(module or Net(), bce, lambda out, y: {}, params, seed=3, threads=1, patience=patience, store=store,
                   checkpoint=CheckpointConfig(every_steps=every), callbacks=callbacks)


@pytest.mark.parametrize("overrides", [
    {"schedule": "cosine", "warmup_steps": 3},
    {"schedule": "onecycle", "optimizer": "sgd"},
    {"schedule": "step", "step_epochs": 1, "grad_accumulation": 2, "clip_grad_norm": 0.5},
    {"schedule": "plateau", "step_epochs": 0 + 1, "optimizer": "adam", "weight_decay": 0.01},
])
def test_resume_after_interruption_at_any_step_is_bit_identical(tmp_path, overrides):
    assert_resume_is_bit_identical(tmp_path, EngineParams(epochs=4, batch_size=32, lr=0.05, **overrides), Net)


@pytest.mark.usefixtures("bf16_as_native")
def test_resume_with_the_fast_paths_packed_dropout_is_bit_identical(tmp_path):
    """Its masks come from torch's generator (one draw per call), whose state the checkpoint holds."""
    params = EngineParams(epochs=4, batch_size=32, lr=0.05, optimizer="adam", amp="bf16")
    assert_resume_is_bit_identical(tmp_path, params, lambda: Net(packed_dropout=True))


def assert_resume_is_bit_identical(tmp_path, params, make_module):
    train, val = data()
    straight = trainer(params, patience=2, module=make_module())
    straight.fit(train, val)

    class DieAt(Callback):
        def __init__(self, step):
            self.at = step

        def on_step_end(self, trainer):
            if trainer.step == self.at:
                raise Killed

    store = CheckpointStore(tmp_path, "h", keep_last=2)
    for kill in (5, 13):  # mid-epoch, then again after resuming
        with pytest.raises(Killed):
            trainer(params, store, every=3, callbacks=[DieAt(kill)], patience=2, module=make_module()).fit(train, val)
    resumed = trainer(params, store, every=3, patience=2, module=make_module())
    result = resumed.fit(train, val)
    assert result.resumed_from is not None
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.history == straight.history


def test_out_of_memory_halves_micro_batch_keeping_the_effective_batch():
    train, val = data()
    t = trainer(EngineParams(epochs=1, batch_size=64, grad_accumulation=1), module=Net(fail_above=16))
    t.fit(train, val)
    assert (t.counters.micro, t.counters.accum) == (16, 4)
    assert t.step == 4  # 240 rows / effective batch 64: as many optimizer steps as without OOM


def test_out_of_memory_gives_up_after_the_retry_limit():
    train, val = data()
    with pytest.raises(Exception, match="out of memory even at micro-batch"):
        trainer(EngineParams(epochs=1, batch_size=64, max_oom_retries=1), module=Net(fail_above=8)).fit(train, val)


def nan_after(count):
    calls = {"n": 0}

    def loss(out, y):
        calls["n"] += 1
        return bce(out, y) * (float("nan") if calls["n"] in count else 1.0)
    return loss


def test_nan_loss_stops_naming_epoch_step_and_last_checkpoint(tmp_path):
    train, val = data()
    store = CheckpointStore(tmp_path, "h")
    # 8 training batches + 1 validation call in epoch 1: the 10th call is epoch 2, step 9
    t = Trainer(Net(), nan_after({10}), lambda o, y: {}, EngineParams(epochs=2, batch_size=32), seed=0, threads=1,
                store=store, checkpoint=CheckpointConfig(every_steps=4))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2 step 9; last good checkpoint: .*ckpt-000000008\.pt"):
        t.fit(train, val)


def test_nan_batches_can_be_skipped_up_to_a_limit():
    train, val = data()
    t = Trainer(Net(), nan_after({3, 5}), lambda o, y: {}, EngineParams(epochs=1, batch_size=32, max_bad_batches=2),
                seed=0, threads=1)
    t.fit(train, val)
    assert t.counters.bad_batches == 2 and all(np.isfinite(v) for v in t.history["train_loss"])


def test_as_tensor_copies_read_only_column_major_arrays():
    array = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(4, 3))
    array.setflags(write=False)
    tensor = as_tensor(array, torch.float32)
    assert tensor.is_contiguous() and torch.equal(tensor, torch.arange(12, dtype=torch.float32).reshape(4, 3))


class BatchNormNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        self.smallest = None

    def forward(self, x):
        if self.training:
            self.smallest = min(self.smallest or len(x), len(x))
        return self.net(x)


@pytest.mark.parametrize("rows, batch_size, accumulation", [
    (240, 239, 1),  # windows of 239 and 1 row: the 1-row window is skipped
    (231, 10, 3),  # last window 21 rows = micro-batches 10, 10, 1: the 1-row one joins the previous
])
def test_batch_norm_never_trains_on_a_single_row(rows, batch_size, accumulation):
    train, val = data()
    X, y = train.tensors
    module = BatchNormNet()
    t = trainer(EngineParams(epochs=2, batch_size=batch_size, grad_accumulation=accumulation), module=module)
    t.fit(TensorBatches(X[:rows], y[:rows]), val)
    assert module.smallest >= 2
    assert all(np.isfinite(v) for v in t.history["train_loss"])


class Snapshots(Callback):
    """The weights at the end of every epoch, by epoch."""

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, trainer, values):
        self.weights[trainer.epoch] = {k: v.clone() for k, v in trainer.module.state_dict().items()}


def test_early_stopping_stops_at_its_patience_and_restores_the_best_epoch():
    scripted = iter([1.0, 0.8, 0.9, 0.95, 0.85, 0.5, 0.4])  # best at epoch 1; epochs 2, 3, 4 no better

    train, val = data()
    snapshots = Snapshots()
    t = Trainer(Net(), bce, None, EngineParams(epochs=7, batch_size=32), seed=0, threads=1, patience=3,
                callbacks=[snapshots], evaluator=lambda: {"loss": next(scripted)})
    result = t.fit(train, val)
    assert (result.epochs, result.best_epoch, result.stopped_early) == (5, 1, True)
    assert t.history["validation_loss"] == [1.0, 0.8, 0.9, 0.95, 0.85]
    assert all(torch.equal(v, snapshots.weights[1][k]) for k, v in t.module.state_dict().items())
    assert not all(torch.equal(v, snapshots.weights[4][k]) for k, v in t.module.state_dict().items())


def test_without_patience_every_epoch_runs_and_the_last_weights_stay():
    scripted = iter([1.0, 0.8, 0.9, 0.95])
    train, val = data()
    snapshots = Snapshots()
    t = Trainer(Net(), bce, None, EngineParams(epochs=4, batch_size=32, mode="min"), seed=0, threads=1,
                callbacks=[snapshots], evaluator=lambda: {"loss": next(scripted)})
    result = t.fit(train, val)
    assert (result.epochs, result.best_epoch, result.stopped_early) == (4, 1, False)
    assert all(torch.equal(v, snapshots.weights[3][k]) for k, v in t.module.state_dict().items())


def test_resuming_a_checkpoint_of_another_world_size_continues_and_warns_it_is_not_bit_identical(tmp_path, capsys):
    params = EngineParams(epochs=2, batch_size=32, lr=0.05)
    train, val = data()
    store = CheckpointStore(tmp_path, "h")

    class DieAt(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 4:
                raise Killed

    with pytest.raises(Killed):
        trainer(params, store, every=2, callbacks=[DieAt()]).fit(train, val)
    latest = store.latest()
    # what rank 0 of a 2-process job writes: the state plus each rank's generators
    state = {k: v for k, v in latest.items() if k != "path"}
    state["ranks"] = {"world_size": 2, "rng": [state["rng"], state["rng"]]}
    store.save(state, 4, None)
    result = trainer(params, store, every=2).fit(train, val)
    assert result.resumed_from is not None and result.epochs == 2
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    expected = ("warning: resuming a checkpoint written by 2 training process(es) with 1: the result is not "
                "bit-identical to an uninterrupted run")
    assert warning == [expected]


def test_fit_restores_the_process_wide_torch_settings_it_changes():
    settings = lambda: (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),  # noqa: E731
                        torch.utils.deterministic.fill_uninitialized_memory)
    before = settings()
    seen = []

    class Record(Callback):
        def on_step_end(self, trainer):
            seen.append(settings())

    train, val = data()
    trainer(EngineParams(epochs=1, batch_size=120), callbacks=[Record()]).fit(train, val)
    assert seen[0] == (1, True, False)  # while training: the trainer's threads, deterministic, no NaN fill
    assert settings() == before
