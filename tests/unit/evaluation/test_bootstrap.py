"""The bootstrap's weighted metrics and resampling: equal to scikit-learn, seeded, blocked without changing values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as m

from trainpipe.evaluation import bootstrap as b

BINARY = ("roc_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")


@pytest.fixture
def binary():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.4 * y + rng.normal(0.3, 0.25, len(y)), 0, 1).round(2)  # rounded: many ties
    return y, np.column_stack([1 - p, p])


def test_weighted_roc_auc_equals_scikit_learn_with_sample_weight(binary):
    y, proba = binary
    rng = np.random.default_rng(0)
    for weights in (rng.random(len(y)) * 3, rng.integers(0, 4, len(y)).astype(float)):
        assert b.score("binary", "roc_auc", y, proba, weights=weights) == pytest.approx(
            m.roc_auc_score(y, proba[:, 1], sample_weight=weights), rel=1e-12)
    # the bootstrap's own path: a float32 block of integer weights, summed in int32
    W = b.resample_weights(len(y), seed=4, start=0, stop=5)
    values = b.prepare("binary", "roc_auc", y, proba)(W, W.sum(axis=1))
    expected = [m.roc_auc_score(y, proba[:, 1], sample_weight=w) for w in W]
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_every_weighted_binary_metric_equals_scikit_learn_on_a_resample(binary):
    y, proba = binary
    W = b.resample_weights(len(y), seed=1, start=3, stop=4)
    w, p = W[0].astype(float), proba[:, 1]
    pred = p >= 0.5
    expected = {"roc_auc": m.roc_auc_score(y, p, sample_weight=w),
                "log_loss": m.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), sample_weight=w),
                "brier": m.brier_score_loss(y, p, sample_weight=w), "accuracy": m.accuracy_score(y, pred, sample_weight=w),
                "precision": m.precision_score(y, pred, sample_weight=w), "recall": m.recall_score(y, pred, sample_weight=w),
                "f1": m.f1_score(y, pred, sample_weight=w)}
    for name in BINARY:
        got = b.prepare("binary", name, y, proba)(W, W.sum(axis=1))[0]
        assert got == pytest.approx(expected[name], rel=1e-5), name


def test_intervals_are_deterministic_for_a_seed_and_change_with_it(binary):
    y, proba = binary
    first = b.metric_cis("binary", BINARY, y, proba, resamples=150, seed=7)
    assert first == b.metric_cis("binary", BINARY, y, proba, resamples=150, seed=7)
    assert first != b.metric_cis("binary", BINARY, y, proba, resamples=150, seed=8)
    for name, (low, high) in first.items():
        assert low <= b.score("binary", name, y, proba) <= high, name
    assert set(b.metric_cis("binary", ["pr_auc", "roc_auc"], y, proba)) == {"roc_auc"}  # no weighted pr_auc


def test_a_resample_is_the_same_weights_however_the_resamples_are_blocked():
    whole = b.resample_weights(1001, seed=5, start=0, stop=12)
    np.testing.assert_array_equal(b.resample_weights(1001, seed=5, start=7, stop=12), whole[7:])
    blocks = np.concatenate(list(b.weight_blocks(1001, seed=5, resamples=12, block_cells=3000)))
    np.testing.assert_array_equal(blocks, whole)
    assert whole.dtype == np.float32 and (whole == np.round(whole)).all()


def test_weights_are_poisson_one():
    counts = np.bincount(b.POISSON.astype(np.int64)) / len(b.POISSON)
    pmf = [math.exp(-1) / math.factorial(k) for k in range(len(counts))]
    np.testing.assert_allclose(counts, pmf, atol=2 ** -16)
    W = b.resample_weights(200_000, seed=0, start=0, stop=2)
    assert W.mean() == pytest.approx(1.0, abs=0.01) and W.var() == pytest.approx(1.0, abs=0.02)


def test_paired_bootstrap_scores_both_models_on_the_same_resamples(binary):
    y, proba = binary
    same = b.paired_bootstrap("binary", "roc_auc", y, proba, proba.copy(), resamples=100, confidence=0.9, seed=0)
    assert same["low"] == same["high"] == 0.0  # unpaired resamples would give a spread around 0
    rng = np.random.default_rng(0)
    y3, p3 = rng.integers(0, 3, 500), rng.dirichlet([1, 1, 1], 500)
    for name in ("accuracy", "f1_macro", "f1_weighted", "log_loss"):
        W = b.resample_weights(500, seed=2, start=0, stop=1)
        w = W[0].astype(float)
        expected = {"accuracy": m.accuracy_score(y3, p3.argmax(1), sample_weight=w),
                    "f1_macro": m.f1_score(y3, p3.argmax(1), average="macro", sample_weight=w),
                    "f1_weighted": m.f1_score(y3, p3.argmax(1), average="weighted", sample_weight=w),
                    "log_loss": m.log_loss(y3, p3, sample_weight=w)}[name]
        assert b.prepare("multiclass", name, y3, p3)(W, W.sum(axis=1))[0] == pytest.approx(expected, rel=1e-5), name


def test_regression_r2_stays_exact_in_float32_for_large_targets():
    rng = np.random.default_rng(0)
    y = 1e5 + rng.normal(0, 3, 5000)
    pred = y + rng.normal(0, 1, 5000)
    W = b.resample_weights(5000, seed=3, start=0, stop=1)
    got = b.prepare("regression", "r2", y, pred)(W, W.sum(axis=1))[0]
    assert got == pytest.approx(m.r2_score(y, pred, sample_weight=W[0].astype(float)), abs=1e-4)
