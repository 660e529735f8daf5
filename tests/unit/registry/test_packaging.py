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
