"""The packaged models' entry files: each one loads its own model class, and packages saved before the package
layout changed still find theirs."""

from __future__ import annotations

import ast

import pytest

from trainpipe.registry import packaging, ranking_packaging


@pytest.mark.parametrize("module, model_class", [(packaging, "PackagedModel"), (ranking_packaging, "RecommenderModel")])
def test_each_package_kind_is_saved_with_the_entry_file_of_its_own_model_class(module, model_class):
    imports = [node for node in ast.walk(ast.parse(module.ENTRY.read_text())) if isinstance(node, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports if i.module.startswith("trainpipe")] == \
        [(module.__name__, [model_class])]


@pytest.mark.parametrize("old_entry, new", [
    ("from trainpipe.packaging import PackagedModel", packaging.PackagedModel),
    ("from trainpipe.ranking.packaging import RecommenderModel", ranking_packaging.RecommenderModel),
])
def test_entry_files_of_packages_saved_under_the_old_layout_still_import_their_model(old_entry, new):
    namespace: dict = {}
    exec(old_entry, namespace)  # what an older package's pyfunc_entry.py runs when MLflow loads it
    assert namespace[new.__name__] is new


def test_text_labels_are_gathered_without_python_strings_and_number_labels_stay_numbers():
    import numpy as np
    import pandas as pd

    codes = np.array([1, 0, 1, 1])
    labels = packaging.class_labels(["No", "Yes"], codes)
    frame = pd.DataFrame({"prediction": labels}, index=[7, 3, 9, 1])  # an array, not a Series: nothing to align
    assert frame["prediction"].tolist() == ["Yes", "No", "Yes", "Yes"]
    assert frame["prediction"].dtype == pd.DataFrame({"p": np.asarray(["No"], dtype=object)})["p"].dtype
    assert packaging.class_labels([0, 1], codes).tolist() == [1, 0, 1, 1]


def test_mlflow_requirement_check_is_skipped_only_while_a_package_is_saved_and_restored_after_errors():
    """Pinned requirements come from this environment, so MLflow's check (a walk over every installed file) is
    skipped while saving; MLflow's own function must be back afterwards, also when saving fails."""
    import mlflow.utils.environment as environment

    original = environment.warn_dependency_requirement_mismatches
    with packaging.pinned_requirements_unchecked():
        assert environment.warn_dependency_requirement_mismatches is not original
        assert environment.warn_dependency_requirement_mismatches(["numpy==0.0.1"]) is None
    assert environment.warn_dependency_requirement_mismatches is original
    with pytest.raises(RuntimeError), packaging.pinned_requirements_unchecked():
        raise RuntimeError("save failed")
    assert environment.warn_dependency_requirement_mismatches is original


def test_pinned_requirements_are_the_versions_installed_here():
    from importlib import metadata

    pins = dict(p.split("==") for p in packaging.pinned(("numpy", "pandas", ("xgboost-not-here", "scikit-learn"))))
    assert pins == {"numpy": metadata.version("numpy"), "pandas": metadata.version("pandas"),
                    "scikit-learn": metadata.version("scikit-learn")}
