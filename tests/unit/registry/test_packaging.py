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
