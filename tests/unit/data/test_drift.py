"""Drift against a reference summary: real data (scikit-learn's breast cancer) shifted one column at a time,
unchanged halves of it, categorical and label shifts, and the summary's own contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from trainpipe.data.drift import DriftConfig, check_summary, chi2_pvalue, compare, ks_pvalue, psi, summarize
from trainpipe.tools.datasets import breast_cancer
from trainpipe.errors import DataError


@pytest.fixture(scope="module")
def halves() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two random halves of the 569 rows: the champion's data and this run's, from one distribution."""
    frame = breast_cancer()
    order = np.random.default_rng(0).permutation(len(frame))
    return frame.iloc[order[:285]].reset_index(drop=True), frame.iloc[order[285:]].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(halves) -> dict:
    return summarize(halves[0], label="diagnosis", label_kind="categorical")


def test_unchanged_data_passes(halves, reference):
    report = compare(halves[1], reference, DriftConfig())
    assert report.status == "ok" and report.flagged == [] and not report.blocks
    assert report.line() == "drift: none found in 31 columns compared with the champion's data"
    # small halves have noisy PSIs above psi_warn; the chi-square test knows it is noise
    assert max(r.psi for r in report.rows) > 0.1


@pytest.mark.parametrize("column", ["mean_texture", "worst_area", "mean_smoothness"])
def test_shifting_one_real_column_flags_that_column_and_only_it(halves, reference, column):
    current = halves[1].copy()
    current[column] = current[column] + current[column].std()
    report = compare(current, reference, DriftConfig(mode="gate"))
    assert report.status == "fail" and report.flagged == [column] and report.blocks
    row = next(r for r in report.rows if r.column == column)
    assert (row.status, row.statistic, row.threshold_key) == ("fail", "psi", "drift.psi_fail")
    assert row.psi > 0.25 and row.ks > 0.3 and row.ks_p < report.alpha and row.chi2_p < report.alpha
    assert report.line().startswith(f"drift: 1 failed: {column} (PSI ")


def test_a_small_shift_warns_on_its_ks_statistic(halves, reference):
    current = halves[1].copy()
    current["mean_texture"] = current["mean_texture"] * 1.12
    row = next(r for r in compare(current, reference, DriftConfig(psi_warn=0.5, psi_fail=1.0)).rows
               if r.column == "mean_texture")
    assert (row.status, row.statistic, row.threshold_key) == ("warn", "ks", "drift.ks_warn")


def test_a_shift_in_the_label_is_flagged_as_the_label(halves, reference):
    current = halves[1]
    current = pd.concat([current[current["diagnosis"] == "benign"], current[current["diagnosis"] == "malignant"][:10]])
    report = compare(current, reference, DriftConfig())
    label = next(r for r in report.rows if r.column == "diagnosis")
    assert label.role == "label" and label.kind == "categorical" and label.status == "fail"
    assert "diagnosis" in report.flagged


def test_categorical_drift_and_values_the_reference_never_saw():
    rng = np.random.default_rng(1)
    before = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 5000, p=[0.6, 0.3, 0.1]),
                           "x": rng.normal(size=5000)})
    same = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 5000, p=[0.6, 0.3, 0.1]),
                         "x": rng.normal(size=5000)})
    new = same.assign(plan=rng.choice(["basic", "pro", "team", "enterprise"], 5000, p=[0.3, 0.2, 0.1, 0.4]))
    summary = summarize(before)
    assert summary["columns"]["plan"]["values"] == ["basic", "pro", "team"]
    assert compare(same, summary, DriftConfig()).status == "ok"
    report = compare(new, summary, DriftConfig())
    assert report.flagged == ["plan"] and next(r for r in report.rows if r.column == "plan").psi > 1


def test_missing_values_moving_is_drift_even_when_the_values_do_not():
    rng = np.random.default_rng(2)
    before = pd.DataFrame({"x": rng.normal(size=4000)})
    after = pd.DataFrame({"x": rng.normal(size=4000)})
    after.loc[: 1999, "x"] = np.nan  # half missing; the rest distributed as before
    (row,) = compare(after, summarize(before), DriftConfig()).rows
    assert row.status == "fail" and row.ks < 0.1  # KS sees no change in the values; PSI's missing bin does


def test_columns_missing_new_ignored_or_too_small_are_skipped_with_a_reason():
    rng = np.random.default_rng(3)
    before = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "id": np.arange(500),
                           "when": pd.date_range("2026-01-01", periods=500, freq="h")})
    summary = summarize(before)
    assert list(summary["skipped"]) == ["when"] and "time columns are expected to move" in summary["skipped"]["when"]
    after = pd.DataFrame({"a": rng.normal(size=30), "c": rng.normal(size=30), "id": np.arange(30),
                          "when": pd.date_range("2026-02-01", periods=30, freq="h")})
    report = compare(after, summary, DriftConfig(ignore=["id"]))
    notes = {r.column: (r.status, r.note) for r in report.rows}
    assert notes == {"a": ("skipped", "fewer than drift.min_rows (50) non-empty rows"),
                     "b": ("skipped", "not in this run's data"), "c": ("skipped", "not in the reference data")}
    assert report.status == "ok"


def test_the_summary_is_compact_json_that_round_trips(halves, reference):
    text = json.dumps(reference)
    assert compare(halves[1], json.loads(text), DriftConfig()).to_json() == \
        compare(halves[1], reference, DriftConfig()).to_json()
    numeric = reference["columns"]["mean_radius"]
    assert len(numeric["counts"]) == len(numeric["edges"]) + 1 <= 102
    assert sum(numeric["counts"]) + numeric["missing"] == reference["rows"] == 285
    assert len(text) / len(reference["columns"]) < 2000  # bytes per column
    assert all(len(repr(e)) <= 16 for e in numeric["edges"])  # 7 significant digits, not float noise


def test_a_constant_or_empty_column_compares_without_error():
    before = pd.DataFrame({"k": np.ones(200), "empty": np.full(200, np.nan)})
    after = pd.DataFrame({"k": np.ones(200), "empty": np.full(200, np.nan)})
    report = compare(after, summarize(before), DriftConfig())
    assert {r.column: r.status for r in report.rows} == {"k": "ok", "empty": "skipped"}
    moved = compare(after.assign(k=2.0), summarize(before), DriftConfig())
    assert moved.flagged == ["k"]


def test_statistics_match_their_textbook_values():
    assert psi(np.array([50, 50]), np.array([50, 50])) == 0
    assert psi(np.array([50, 50]), np.array([80, 20])) == pytest.approx((0.8 - 0.5) * np.log(1.6) + (0.2 - 0.5) * np.log(0.4))
    from scipy.stats import chi2_contingency, ks_2samp

    table = np.array([[30, 50, 20], [25, 40, 35]])
    assert chi2_pvalue(table[0], table[1]) == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=300), rng.normal(0.3, size=400)
    exact = ks_2samp(a, b, method="asymp")
    assert ks_pvalue(exact.statistic, 300, 400) == pytest.approx(exact.pvalue, rel=1e-6)


def test_the_ks_statistic_from_the_summary_is_close_to_the_exact_one():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=20_000), rng.normal(0.1, 1.1, size=20_000)
    (row,) = compare(pd.DataFrame({"x": b}), summarize(pd.DataFrame({"x": a})), DriftConfig()).rows
    exact = ks_2samp(a, b).statistic
    assert exact - 0.011 <= row.ks <= exact + 1e-9  # read at 101 percentile points: a lower bound within ~0.01


def test_config_and_summary_mistakes_are_named():
    with pytest.raises(ValidationError, match="psi_fail: must be at least psi_warn"):
        DriftConfig(psi_warn=0.3, psi_fail=0.2)
    with pytest.raises(DataError, match="champion.json: not a drift reference summary of version 1"):
        check_summary({"version": 9}, "champion.json")


def test_binned_counts_equal_counting_on_the_sorted_column_even_with_values_on_the_edges() -> None:
    from trainpipe.data.drift import _numeric_bins

    rng = np.random.default_rng(5)
    reference = pd.Series(np.round(rng.normal(size=5000), 1))  # many ties: values fall exactly on the edges
    summary = summarize(pd.DataFrame({"x": reference}), None, "categorical")["columns"]["x"]
    current = np.round(rng.normal(0.2, 1.1, size=3000), 1)
    current[:7] = np.nan
    current[7:9] = np.inf
    got = _numeric_bins(summary, pd.Series(current), 10)
    finite = np.sort(current[np.isfinite(current)])
    edges = np.asarray(summary["edges"])
    expected_below = np.searchsorted(finite, edges, side="right")
    ref_below = np.cumsum(summary["counts"])[:-1]
    assert got["m"] == len(finite) and got["cur"][-1] == 9
    assert got["ks"] == pytest.approx(float(np.max(np.abs(ref_below / got["n"] - expected_below / len(finite)))))
