"""torch_mlp's parameters: nonsense sizes and rates are config errors naming the key, before any data is read."""

import pytest

from trainpipe.errors import ModelError
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
