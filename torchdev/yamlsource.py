"""YAML loading that remembers where every key came from, so errors can name the file and line.

PyYAML's safe loader silently keeps the last of two duplicate keys; here a duplicate is an error,
because a duplicated variant name in images.yaml would otherwise hide one of the two definitions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from torchdev.errors import ConfigError


@dataclass(frozen=True)
class Origin:
    """The file and 1-based line a key was written at."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class SourcedDict(dict):
    """A mapping that records the Origin of each of its keys."""

    def __init__(self, *args: Any, origins: dict[str, Origin] | None = None, where: Origin | None = None):
        super().__init__(*args)
        self.origins: dict[str, Origin] = dict(origins or {})
        self.where = where

    def origin(self, key: str) -> Origin | None:
        return self.origins.get(key, self.where)


def _loader_for(file: str) -> type[yaml.SafeLoader]:
    class SourcedLoader(yaml.SafeLoader):
        def construct_sourced_mapping(self, node: yaml.MappingNode) -> SourcedDict:
            mapping = SourcedDict(where=Origin(file, node.start_mark.line + 1))
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                at = Origin(file, key_node.start_mark.line + 1)
                if key in mapping:
                    raise ConfigError(f"{at}: duplicate key '{key}' (first at line {mapping.origins[key].line})")
                value = self.construct_object(value_node, deep=True)
                if isinstance(value, SourcedDict):
                    value.where = at  # a nested mapping is "at" its key, where a reader looks for it
                mapping[key] = value
                mapping.origins[key] = at
            return mapping

    SourcedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  SourcedLoader.construct_sourced_mapping)
    return SourcedLoader


def load_yaml(path: Path) -> SourcedDict:
    """Parse one YAML file into SourcedDicts; an empty or non-mapping file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    try:
        data = yaml.load(text, Loader=_loader_for(str(path)))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; it must be a mapping with 'image' and 'variants'")
    if not isinstance(data, SourcedDict):
        raise ConfigError(f"{path}:1: the top level must be a mapping, not a {type(data).__name__}")
    return data


def key_origins(data: SourcedDict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Origin]:
    """Where every key of `data` was written, nested ones too, by its path from the top: ("variants", "cu117",
    "lock") -> images.yaml or the overlay, and the line. What parsing keeps once the raw YAML is gone."""
    found: dict[tuple[str, ...], Origin] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        origin = data.origin(key)
        if origin is not None:
            found[path] = origin
        if isinstance(value, SourcedDict):
            found.update(key_origins(value, path))
    return found


def deep_merge(base: Any, overlay: Any) -> Any:
    """Merge overlay into base: mappings merge key by key, anything else is replaced by the overlay."""
    if not (isinstance(base, SourcedDict) and isinstance(overlay, SourcedDict)):
        return overlay
    merged = SourcedDict(base, origins=base.origins, where=base.where)
    for key, value in overlay.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
        merged.origins[key] = overlay.origins[key]
    return merged
