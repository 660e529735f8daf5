"""Gates as pure functions: weighted metrics equal scikit-learn's, thresholds, slices, the champion check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as m

from trainpipe.config import config_from_dict
from trainpipe.errors import ConfigError
from trainpipe.evaluation import gates as g


@pytest.fixture
def binary():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 * y + rng.normal(0.25, 0.25, 400), 0, 1).round(2)  # rounded: many ties
    return y, np.column_stack([1 - p, p])


def test_weighted_metrics_equal_scikit_learn_on_unit_weights(binary):
    y, proba = binary
    assert g.score("binary", "roc_auc", y, proba) == pytest.approx(m.roc_auc_score(y, proba[:, 1]))
    assert g.score("binary", "log_loss", y, proba) == pytest.approx(m.log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15)))
    assert g.score("binary", "f1", y, proba) == pytest.approx(m.f1_score(y, proba[:, 1] >= 0.5))
    assert g.score("binary", "accuracy", y, proba, threshold=0.3) == pytest.approx(m.accuracy_score(y, proba[:, 1] >= 0.3))
    rng = np.random.default_rng(0)
    y3, p3 = rng.integers(0, 3, 300), rng.dirichlet([1, 1, 1], 300)
    assert g.score("multiclass", "f1_macro", y3, p3) == pytest.approx(m.f1_score(y3, p3.argmax(1), average="macro"))
    assert g.score("multiclass", "f1_weighted", y3, p3) == pytest.approx(m.f1_score(y3, p3.argmax(1), average="weighted"))
    yr, pr = rng.normal(10, 3, 200), rng.normal(10, 3, 200)
    assert g.score("regression", "rmse", yr, pr) == pytest.approx(np.sqrt(m.mean_squared_error(yr, pr)))
    assert g.score("regression", "r2", yr, pr) == pytest.approx(m.r2_score(yr, pr))


def test_integer_weights_equal_repeating_rows(binary):
    y, proba = binary
    w = np.random.default_rng(1).integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), w)
    assert g.score("binary", "roc_auc", y, proba, weights=w) == pytest.approx(
        m.roc_auc_score(y[repeated], proba[repeated, 1]))


def test_paired_bootstrap_is_deterministic_for_a_seed_and_brackets_the_difference(binary):
    y, proba = binary
    worse = np.column_stack([1 - proba[:, 1] ** 3, proba[:, 1] ** 3])
    noisy = np.clip(proba[:, 1] + np.random.default_rng(2).normal(0, 0.3, len(y)), 0, 1)
    other = np.column_stack([1 - noisy, noisy])
    kwargs = dict(resamples=300, confidence=0.95, seed=7)
    first = g.paired_bootstrap("binary", "roc_auc", y, proba, other, **kwargs)
    assert first == g.paired_bootstrap("binary", "roc_auc", y, proba, other, **kwargs)
    assert first != g.paired_bootstrap("binary", "roc_auc", y, proba, other, **{**kwargs, "seed": 8})
    diff = g.score("binary", "roc_auc", y, proba) - g.score("binary", "roc_auc", y, other)
    assert first["low"] < diff < first["high"] and first["low"] > 0  # the noisy model is clearly worse
    same = g.paired_bootstrap("binary", "roc_auc", y, proba, proba, **kwargs)
    assert same["low"] == same["high"] == 0.0
    del worse


def test_threshold_checks_pass_fail_and_unmeasured():
    gates = g.GatesConfig(min={"test_roc_auc": 0.8, "validation_roc_auc": 0.95}, max={"latency_p99_row_ms": 0.1})
    checks = g.threshold_checks({"test_roc_auc": 0.85, "validation_roc_auc": 0.9}, gates)
    by_name = {c["check"]: c for c in checks}
    assert by_name["test_roc_auc"]["passed"] and not by_name["validation_roc_auc"]["passed"]
    assert by_name["validation_roc_auc"]["key"] == "gates.min.validation_roc_auc"
    assert not by_name["latency_p99_row_ms"]["passed"] and "not measured" in by_name["latency_p99_row_ms"]["reason"]


def test_slices_gate_only_big_enough_slices_with_their_own_metric(binary):
    y, proba = binary
    frame = pd.DataFrame({"plan": np.where(np.arange(len(y)) < 380, "basic", "gold"),
                          "age": np.arange(len(y), dtype=float)})
    proba = proba.copy()
    proba[:60] = proba[:60][:, ::-1]  # the model is wrong on the first 60 rows: the youngest bucket fails
    config = g.SliceGates(columns=["plan"], numeric={"age": 4}, limit=0.7, min_size=30)
    rows, checks = g.slice_checks("binary", "roc_auc", y, proba, g.slice_masks(frame, config), config, 0.5)
    assert [r["slice"] for r in rows][:2] == ["plan=basic", "plan=gold"] and len(rows) == 6
    assert "slice plan=gold" not in {c["check"] for c in checks}  # 20 rows < min_size: reported, not gated
    failed = [c["check"] for c in checks if not c["passed"]]
    assert failed == ["slice age in (-0.001, 99.75]"]
    for row in rows:
        mask = g.slice_masks(frame, config)[[r["slice"] for r in rows].index(row["slice"])][1]
        assert row["roc_auc"] == pytest.approx(m.roc_auc_score(y[mask], proba[mask, 1]))


def test_champion_check_regression_improvement_and_significance(binary):
    y, proba = binary
    noisy = np.clip(proba[:, 1] + np.random.default_rng(2).normal(0, 0.3, len(y)), 0, 1)
    worse = np.column_stack([1 - noisy, noisy])
    record, checks = g.champion_check("binary", "roc_auc", y, worse, proba, g.ChampionGate(bootstrap_resamples=0),
                                      0.5, "4")
    assert record["improvement"] < 0 and [c["passed"] for c in checks] == [False]
    loose = g.ChampionGate(max_regression=0.5, bootstrap_resamples=0)
    assert all(c["passed"] for c in g.champion_check("binary", "roc_auc", y, worse, proba, loose, 0.5, "4")[1])
    strict = g.ChampionGate(min_improvement=0.01, require_significant=True, bootstrap_resamples=200)
    record, checks = g.champion_check("binary", "roc_auc", y, proba, worse, strict, 0.5, "4")
    assert all(c["passed"] for c in checks) and len(checks) == 3 and record["ci"]["low"] > 0
    record, checks = g.champion_check("binary", "log_loss", y, proba, proba, strict, 0.5, "4")
    assert [c["passed"] for c in checks] == [True, False, False]  # a tie neither improves nor is significant


def test_gate_config_names_are_checked_before_anything_runs(tmp_path):
    base = {"task": "binary", "data": {"path": str(tmp_path / "x.csv"), "target": "y"}}
    with pytest.raises(ConfigError) as err:
        config_from_dict({**base, "gates": {"min": {"test_roc_aux": 0.8}}})
    assert "gates.min.test_roc_aux" in err.value.message and "test_roc_auc" in err.value.message
    with pytest.raises(ConfigError) as err:
        config_from_dict({**base, "evaluation": {"primary_metric": "pr_auc"}})
    assert err.value.key == "gates.champion.metric"
    config_from_dict({**base, "evaluation": {"primary_metric": "pr_auc"}, "gates": {"champion": {"metric": "roc_auc"}}})


def test_an_identical_champion_rescored_with_float_noise_passes_the_regression_check(binary):
    """The issue: improvement -1.059e-09 with allowed regression 0 failed a model identical to the champion."""
    y, proba = binary
    p = np.clip(proba[:, 1], 0.01, 0.99)
    champion = np.column_stack([1 - p, p])
    nudged = p - 1e-9 * (2 * y - 1)  # every score a hair further from the truth: worse only by float noise
    challenger = np.column_stack([1 - nudged, nudged])
    default = g.ChampionGate(bootstrap_resamples=0)
    record, checks = g.champion_check("binary", "log_loss", y, challenger, champion, default, 0.5, "1")
    assert -1e-7 < record["improvement"] < 0
    assert [c["passed"] for c in checks] == [True]
    assert record["tolerance"] == pytest.approx(1e-6) and "tolerance 1e-06" in checks[0]["reason"]
    exact = g.ChampionGate(bootstrap_resamples=0, tolerance=0)  # what the gate did before: fails on noise
    assert not g.champion_check("binary", "log_loss", y, challenger, champion, exact, 0.5, "1")[1][0]["passed"]
    off = p - 1e-3 * (2 * y - 1)  # a real (if small) regression still fails
    worse = np.column_stack([1 - off, off])
    assert not g.champion_check("binary", "log_loss", y, worse, champion, default, 0.5, "1")[1][0]["passed"]


def test_too_few_test_rows_fail_the_gate_naming_the_key():
    (check,) = g.size_checks(4, 20, "test rows")
    assert not check["passed"] and check["key"] == "gates.min_test_rows"
    assert "4 test rows < gates.min_test_rows 20" in check["reason"]
    assert g.size_checks(20, 20, "test users")[0]["passed"]
    assert g.size_checks(4, 0, "test rows") == []  # 0 turns the check off
    assert g.GatesConfig().min_test_rows == 20


def test_beat_baselines_fails_naming_the_best_baseline_and_passes_on_a_tie():
    metrics = {"test_recall_at_10": 0.060, "test_svd_recall_at_10": 0.079, "test_popularity_recall_at_10": 0.043,
               "validation_recall_at_10": 0.2}
    (check,) = g.baseline_checks(metrics, "recall_at_10", ["popularity", "svd"])
    assert not check["passed"] and check["key"] == "gates.beat_baselines"
    assert check["value"] == 0.060 and check["limit"] == 0.079
    assert "test recall_at_10 0.06 < best baseline svd 0.079" in check["reason"]
    (check,) = g.baseline_checks({**metrics, "test_recall_at_10": 0.079}, "recall_at_10", ["popularity", "svd"])
    assert check["passed"]  # a tie passes
    (check,) = g.baseline_checks(metrics, "recall_at_10", ["popularity"])  # only the baselines asked for count
    assert check["passed"] and check["limit"] == 0.043
    (check,) = g.baseline_checks(metrics, "ndcg_at_10", ["svd"])  # nothing measured: fails, says so
    assert not check["passed"] and "was not measured" in check["reason"]


def test_beat_baselines_is_refused_for_tabular_tasks(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"task": "binary", "data": {"path": str(tmp_path / "x.csv"), "target": "y"},
                          "gates": {"beat_baselines": True}})
    assert "gates.beat_baselines: only task ranking scores baselines" in err.value.message
    assert g.GatesConfig().beat_baselines is False
