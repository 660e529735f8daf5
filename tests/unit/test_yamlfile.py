"""The strict YAML loader: duplicate keys are refused with their line, everything else as SafeLoader."""

import pytest
import yaml

from trainpipe.yamlfile import describe_yaml_error, load_yaml


@pytest.mark.parametrize("text,line,first", [("a: 1\nb: 2\na: 3\n", 3, 1), ("x:\n  y: 1\n  y: 2\n", 3, 2),
                                             ("{a: 1, a: 2}\n", 1, 1), ("- {k: 1}\n- k: 1\n  k: 2\n", 3, 2)])
def test_duplicate_keys_are_refused_with_both_lines(text, line, first):
    with pytest.raises(yaml.YAMLError) as err:
        load_yaml(text)
    described = describe_yaml_error(err.value)
    assert f"at line {line}," in described and f"first set at line {first}" in described


def test_same_key_in_different_mappings_and_merge_overrides_are_fine():
    assert load_yaml("a: {k: 1}\nb: {k: 2}\n") == {"a": {"k": 1}, "b": {"k": 2}}
    assert load_yaml("base: &b {k: 1, j: 2}\nc:\n  <<: *b\n  k: 3\n")["c"] == {"k": 3, "j": 2}


def test_only_safe_tags_are_accepted():
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']\n")
