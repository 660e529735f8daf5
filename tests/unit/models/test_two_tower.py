"""two_tower on the shared engine: bit-exact resume after a crash, save/load, config errors, features."""

import numpy as np
import pytest
import torch

from trainpipe.engine.config import CheckpointConfig
from trainpipe.errors import ModelError
from trainpipe.models.base import FitContext
from trainpipe.models.two_tower import RankingData, TwoTowerFamily
from trainpipe.evaluation.ranking_metrics import interaction_matrix

PARAMS = {"epochs": 3, "batch_size": 64, "embedding_dim": 8, "id_dim": 8, "hidden_dims": [16], "random_negatives": 8}


def small_data(with_features: bool = False) -> RankingData:
    rng = np.random.default_rng(0)
    n_users, n_items, rows = 60, 40, 600
    user, item = rng.integers(0, n_users, rows), rng.integers(0, n_items, rows)
    val = interaction_matrix(rng.integers(0, n_users, 60), rng.integers(0, n_items, 60), n_users, n_items)
    extra = {}
    if with_features:
        extra = {"user_num": rng.standard_normal((n_users, 2)).astype(np.float32),
                 "user_cat": rng.integers(0, 4, (n_users, 1)), "user_cards": [3],
                 "item_num": rng.standard_normal((n_items, 1)).astype(np.float32)}
    return RankingData(user=user, item=item, weight=np.ones(rows, dtype=np.float32), n_users=n_users, n_items=n_items,
                       validation_relevant=val, exclude=interaction_matrix(user, item, n_users, n_items), ks=(5,),
                       **extra)


class Crash(Exception):
    pass


def test_resume_after_a_crash_is_bit_exact(tmp_path, monkeypatch):
    """Crash at the end of the second epoch (after its step checkpoints, before its epoch-end one), resume."""
    from trainpipe.engine.loop import Trainer

    data = small_data()
    reference = TwoTowerFamily("ranking", PARAMS, seed=3, threads=1)
    reference.fit(data, early_stopping_rounds=5)

    context = FitContext(checkpoint_dir=tmp_path / "ckpt", checkpoint=CheckpointConfig(every_steps=2), config_hash="h")

    def crash(epoch, values):
        if epoch == 1:
            raise Crash()

    with pytest.raises(Crash):
        TwoTowerFamily("ranking", PARAMS, seed=3, threads=1).fit(data, early_stopping_rounds=5, report=crash,
                                                                 context=context)
    loaded_steps, load_state_dict = [], Trainer.load_state_dict
    monkeypatch.setattr(Trainer, "load_state_dict",
                        lambda self, st: (loaded_steps.append(st["step"]), load_state_dict(self, st))[1])
    resumed = TwoTowerFamily("ranking", PARAMS, seed=3, threads=1)
    resumed.fit(data, early_stopping_rounds=5, context=context)
    want, got = reference.module.state_dict(), resumed.module.state_dict()
    assert loaded_steps == [20]  # 600 rows / 64 = 10 steps per epoch: resumed after epoch 2's last step
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_history_follows_validation_recall_and_round_trips(tmp_path):
    model = TwoTowerFamily("ranking", {**PARAMS, "loss": "bpr"}, seed=0, threads=1)
    result = model.fit(small_data(with_features=True), early_stopping_rounds=2)
    assert "validation_recall_at_5" in result.history and len(result.history["train_loss"]) == result.iterations
    model.save(tmp_path / "m")
    loaded = TwoTowerFamily.load(tmp_path / "m")
    U, V = model.vectors()
    U2, V2 = loaded.vectors()
    assert np.array_equal(U, U2) and np.array_equal(V, V2)
    assert np.allclose(np.linalg.norm(U, axis=1), 1, atol=1e-5)


def test_unknown_and_untrained_ids_keep_a_zero_id_row():
    data = small_data()
    keep = data.item != 7  # item 7 never appears in training
    data.user, data.item, data.weight = data.user[keep], data.item[keep], data.weight[keep]
    model = TwoTowerFamily("ranking", {**PARAMS, "epochs": 1, "random_negatives": 0}, seed=0, threads=1)
    model.fit(data)
    assert torch.count_nonzero(model.module.user_tower.ids.weight[0]) == 0  # code -1 + 1: "unknown id"
    assert torch.count_nonzero(model.module.item_tower.ids.weight[7 + 1]) == 0
    assert torch.count_nonzero(model.module.item_tower.ids.weight[6 + 1]) > 0


def test_config_errors_name_the_parameter():
    with pytest.raises(ModelError, match=r"model.params.los: two_tower has no parameter 'los' \(did you mean 'loss'\?\)"):
        TwoTowerFamily.check_config({"los": "bpr"}, None, "ranking")
    with pytest.raises(ModelError, match="model.type: two_tower is a ranking model"):
        TwoTowerFamily.check_config({}, None, "binary")


@pytest.mark.parametrize("params,key", [({"hidden_dims": [32, -3]}, "model.params.hidden_dims[1]"),
                                        ({"embedding_dim": 0}, "model.params.embedding_dim"),
                                        ({"dropout": 1.0}, "model.params.dropout"), ({"lr": 0}, "model.params.lr")])
def test_invalid_sizes_and_rates_are_config_errors_before_any_data(params, key):
    with pytest.raises(ModelError) as err:
        TwoTowerFamily.check_config(params, None, "ranking")
    assert err.value.key == key and err.value.message.startswith(key)
