"""YAML reading for the pipeline file and schema files: safe, and strict about duplicate keys.

PyYAML's SafeLoader keeps the last of two equal keys in a mapping without a word, so a second
`name:` silently replaced the first (and a model was registered under the wrong name). YAML 1.2
says keys must be unique; PyYAML has no switch for it, hence the small loader subclass below.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, pointing at the second one."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` then a key of its own is an override on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: SafeLoader reports it itself
                    continue
                if first is not key_node.start_mark:
                    raise ConstructorError(None, None, f"duplicate key {key!r} (first set at line {first.line + 1})",
                                           key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; raises yaml.YAMLError (a duplicate key is a ConstructorError)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """' at line L, column C: problem' (or ': problem' without a position), to follow e.g. 'invalid YAML'."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: {problem}"
