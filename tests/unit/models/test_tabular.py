"""torch_mlp: nonsense params are config errors naming the key; bf16, torch.compile and early stopping through real fits."""

from typing import ClassVar

import numpy as np
import pytest

from trainpipe.errors import ModelError
from trainpipe.models.base import FitContext
from trainpipe.models.tabular import TorchMLPFamily


@pytest.mark.parametrize("params,key", [
    ({"hidden_dims": [-3]}, "model.params.hidden_dims[0]"),
    ({"hidden_dims": [64, 0]}, "model.params.hidden_dims[1]"),
    ({"embedding_dims": {"region": 0}}, "model.params.embedding_dims.region"),
    ({"dropout": 1.0}, "model.params.dropout"),
    ({"dropout": -0.1}, "model.params.dropout"),
    ({"lr": 0}, "model.params.lr"),
    ({"batch_size": 0}, "model.params.batch_size"),
    ({"epochs": 0}, "model.params.epochs"),
])
def test_invalid_params_name_the_key(params, key):
    with pytest.raises(ModelError) as err:
        TorchMLPFamily.check_config(params, None, "binary")
    assert err.value.key == key and err.value.message.startswith(f"{key}: ")


def test_an_empty_hidden_dims_is_a_linear_model_and_allowed():
    TorchMLPFamily.check_config({"hidden_dims": []}, None, "binary")


import torch as torch


# -- training paths the docs promise: bf16 autocast, torch.compile, early stopping at its patience -------------
def separable(n: int = 600, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    cut = n * 2 // 3
    return X[:cut], y[:cut], X[cut:], y[cut:]


class RecordTraining:
    """Callback (by import path, as `training.callbacks` names one): the dtype of the first Linear layer's output
    in training and in evaluation, and the class of the module the steps ran through."""

    dtypes: ClassVar[set] = set()
    step_module: ClassVar[str] = ""

    def __init__(self):
        self.hooked = False

    def on_step_end(self, trainer):
        RecordTraining.step_module = type(trainer.step_module).__name__
        if not self.hooked:
            first = next(m for m in trainer.module.modules() if isinstance(m, torch.nn.Linear))
            first.register_forward_hook(lambda m, args, out: RecordTraining.dtypes.add((m.training, out.dtype)))
            self.hooked = True


RECORD = f"{__name__}:RecordTraining"


def fit(params: dict, data, **kwargs) -> tuple[TorchMLPFamily, object]:
    model = TorchMLPFamily("binary", {"hidden_dims": [16], "batch_size": 64, "lr": 0.02, **params}, 2, seed=0, threads=1)
    return model, model.fit(*data, **kwargs)


@pytest.mark.usefixtures("bf16_as_native")
def test_bf16_autocast_trains_in_bfloat16_and_predicts_well():
    RecordTraining.dtypes = set()
    data = separable()
    model, _ = fit({"epochs": 8, "amp": "bf16"}, data, context=FitContext(callbacks=[RECORD]))
    assert (True, torch.bfloat16) in RecordTraining.dtypes  # the training forward ran under autocast
    assert (False, torch.float32) in RecordTraining.dtypes  # validation did not
    assert (model.predict(data[2]) == data[3]).mean() > 0.9
    plain, _ = fit({"epochs": 8}, data)
    assert not np.array_equal(model.predict_proba(data[2]), plain.predict_proba(data[2]))  # bf16 changed the math


@pytest.mark.slow
def test_torch_compile_trains_predicts_and_round_trips(tmp_path):
    data = separable()
    model, result = fit({"epochs": 3, "compile": True}, data, context=FitContext(callbacks=[RECORD]))
    assert RecordTraining.step_module == "OptimizedModule"  # the steps ran through the compiled module
    assert result.iterations == 3 and (model.predict(data[2]) == data[3]).mean() > 0.85
    model.save(tmp_path / "m")  # the plain module's weights: no `_orig_mod.` prefix, loadable without compiling
    assert np.array_equal(TorchMLPFamily.load(tmp_path / "m").predict_proba(data[2]), model.predict_proba(data[2]))


def test_early_stopping_stops_at_its_patience_with_the_best_epochs_weights():
    data = separable(n=300, noise=0.3)  # noisy labels and a wide net: validation loss turns up early
    model, result = fit({"epochs": 200, "hidden_dims": [64, 64], "lr": 0.05, "dropout": 0.0, "batch_size": 32}, data,
                        early_stopping_rounds=4)
    losses = result.history["validation_loss"]
    assert result.stopped_early and result.iterations == result.best_iteration + 4 + 1 < 200
    assert len(losses) == result.iterations and int(np.argmin(losses)) == result.best_iteration
    p = np.clip(model.predict_proba(data[2])[:, 1], 1e-7, 1 - 1e-7)
    final_loss = -np.mean(data[3] * np.log(p) + (1 - data[3]) * np.log(1 - p))
    assert final_loss == pytest.approx(losses[result.best_iteration], abs=1e-5)  # predicts as at its best epoch


def test_predict_batches_keep_the_widest_layer_near_2_mb_so_its_outputs_stay_in_cache():
    from trainpipe.models.tabular import predict_batch_rows

    assert predict_batch_rows([36, 256, 128, 64]) == 2048  # 2048 x 256 x 4 bytes = 2 MB
    assert predict_batch_rows([8, 16]) == 32768
    assert predict_batch_rows([2, 4]) == 65536  # narrow: capped
    assert predict_batch_rows([100_000]) == 1024  # very wide: floored


def test_predictions_do_not_depend_on_the_predict_batch_size(monkeypatch):
    import trainpipe.models.tabular as tabular

    X, y, X_val, y_val = separable(900)
    family = TorchMLPFamily("binary", {"epochs": 1, "hidden_dims": [8]}, 2, 0, 1)
    family.fit(X, y, X_val, y_val)
    whole = family.predict_proba(X)
    monkeypatch.setattr(tabular, "predict_batch_rows", lambda widths: 7)  # many small batches, a partial last one
    np.testing.assert_allclose(family.predict_proba(X), whole, rtol=1e-6)
