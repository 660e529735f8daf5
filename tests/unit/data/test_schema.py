"""Schemas: inference, hard checks, and soft (warning) range/category checks unless strict."""

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.schema import ColumnSpec, SchemaConfig, infer_schema, label_checks, validate_frame


def frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 90, n), "plan": rng.choice(["a", "b"], n),
                         "spend": rng.normal(50, 10, n), "y": rng.choice(["Yes", "No"], n)})


def test_inferred_schema_accepts_the_data_it_came_from():
    data = frame()
    report = validate_frame(data, infer_schema(data).columns, SchemaConfig())
    assert report["errors"] == [] and report["warnings"] == []


def test_values_beyond_inferred_range_and_new_categories_only_warn():
    schema = infer_schema(frame()).columns
    next_week = frame()
    next_week.loc[0, "age"] = 95
    next_week.loc[1, "plan"] = "c"
    report = validate_frame(next_week, schema, SchemaConfig())
    assert report["errors"] == []
    assert len(report["warnings"]) == 2
    assert "'age'" in report["warnings"][0]["message"] and "95" in report["warnings"][0]["message"]


def test_strict_columns_turn_range_violations_into_errors():
    schema = dict(infer_schema(frame()).columns)
    schema["age"] = schema["age"].model_copy(update={"strict": True})
    data = frame()
    data.loc[0, "age"] = 95
    report = validate_frame(data, schema, SchemaConfig())
    assert len(report["errors"]) == 1 and "age" in report["errors"][0]["message"]


def test_hard_checks_collect_every_failure():
    schema = {"age": ColumnSpec(dtype="int", nullable=False), "plan": ColumnSpec(dtype="float"),
              "missing": ColumnSpec(dtype="float"), "y": ColumnSpec(dtype="string", unique=True)}
    data = frame()
    data["age"] = data["age"].astype(float)
    data.loc[3, "age"] = np.nan
    report = validate_frame(data, schema, SchemaConfig())
    messages = " | ".join(e["message"] for e in report["errors"])
    assert "'missing'" in messages and "non-nullable" in messages and "expected dtype float" in messages
    assert "unique" in messages


def test_label_checks_find_nulls_single_class_and_rare_classes():
    config = SchemaConfig(min_class_count=5)
    assert any("null label" in p["message"] for p in label_checks(pd.Series(["a", None, "b"] * 5, name="y"), "binary", config, "data.target"))
    assert any("single class" in p["message"] for p in label_checks(pd.Series(["a"] * 10, name="y"), "binary", config, "data.target"))
    rare = label_checks(pd.Series(["a"] * 10 + ["b"] * 2, name="y"), "binary", config, "data.target")
    assert rare and rare[0]["message"].startswith("schema.min_class_count")


def test_a_schema_file_with_a_column_twice_is_refused_with_the_line(tmp_path):
    from trainpipe.data.schema import SchemaConfig, load_schema
    from trainpipe.errors import ConfigError

    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  age: {dtype: int}\n  income: {dtype: float}\n  age: {dtype: float}\n")
    with pytest.raises(ConfigError) as err:
        load_schema(SchemaConfig(path=str(path)))
    assert err.value.key == "schema.path" and "duplicate key 'age'" in err.value.message and "line 4" in err.value.message
