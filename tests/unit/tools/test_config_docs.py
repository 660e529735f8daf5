"""docs/configuration.md is generated from the config models and must never drift from them."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import get_args, get_origin

from pydantic import BaseModel

from trainpipe.config import PipelineConfig
from trainpipe.tools.config_docs import render_reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
REGENERATE = "python -m trainpipe.tools.config_docs > docs/configuration.md"


def _model(annotation):
    inner = get_args(annotation)[1] if get_origin(annotation) is dict else annotation
    if get_origin(inner) is UnionType:  # an optional section (ranking: X | None) is documented as X
        options = [a for a in get_args(inner) if a is not type(None)]
        inner = options[0] if len(options) == 1 else None
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key as a dotted path; a map of models (schema.columns) contributes `<name>`."""
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        sub = _model(field.annotation)
        if sub is None:
            keys.append(key)
        elif get_origin(field.annotation) is dict:
            keys.append(key)
            keys += leaf_keys(sub, f"{key}.<name>.")
        else:
            keys += leaf_keys(sub, f"{key}.")
    return keys


def test_configuration_doc_is_up_to_date():
    assert DOC.exists(), f"docs/configuration.md is missing; run `{REGENERATE}`"
    assert DOC.read_text() == render_reference(), (
        f"docs/configuration.md is out of date with the config models; run `{REGENERATE}`")


def test_every_leaf_key_is_documented():
    text = render_reference()
    keys = leaf_keys(PipelineConfig)
    assert {"schema.columns.<name>.dtype", "features.numeric.impute", "tracking.uri", "task"} <= set(keys)
    missing = [k for k in keys if f"| `{k}` |" not in text]
    assert not missing, f"keys missing from the configuration reference: {missing}"


def test_every_leaf_key_has_a_description():
    rows = [line for line in render_reference().splitlines() if line.startswith("| `") and line.count("`") >= 2]
    empty = [row.split("`")[1] for row in rows if row.rstrip().endswith("|  |")]
    assert not empty, f"keys without a description (add Field(description=...)): {empty}"


def test_required_keys_say_required():
    text = render_reference()
    for key in ("task", "data.path", "schema.columns.<name>.dtype"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert "| required |" in row, row
    target = next(line for line in text.splitlines() if line.startswith("| `data.target` |"))
    assert "required by every task but ranking" in target, target  # the config's cross-check enforces it
