"""YAML loading that remembers where every key and list item came from, so errors can name the file and line.

Every construct PyYAML's safe loader accepts is either read with the meaning users expect or refused in one line
naming the file, the line and what to write instead:
- text encodings: UTF-8 with or without a byte-order mark, UTF-16 and UTF-32 with one, CRLF line ends; anything else
  is refused with "save it as UTF-8";
- duplicate keys: PyYAML silently keeps the last, which would hide one of two variants of one name: refused;
- keys YAML reads as something other than text (`on:` a boolean, `11.8:` a number, `null:`, a date): refused with
  the quoted spelling, where a key read as text would silently mean something else (`11.10:` is the number 11.1);
- anchors and aliases: an alias is a copy of what its anchor names; merge keys (`<<: *defaults`, `<<: [*a, *b]`)
  merge as YAML 1.1 says (the mapping's own keys win, then the earlier merged mapping), remembering each merged key's
  own line; an alias inside the node it names is refused;
- deep nesting and aliases that expand beyond reason (a "billion laughs") are refused before anything walks them;
- a value YAML reads as a number, a boolean, null or a date where text was meant keeps the text it was written as
  (`raw`), so the validation can say `write it quoted: python: "3.10"` instead of the 3.1 YAML made of it.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from torchdev.errors import CONFIGURATION, ConfigError, Problem
from torchdev.files import input_file

MAX_DEPTH = 16
"""Levels of nesting a file may have; images.yaml needs five (flavours: devel: bases: cu118: ...)."""
MAX_VALUES = 50_000
"""Values a file may expand to once its aliases are followed; images.yaml has a few hundred."""
MERGE_TAG = "tag:yaml.org,2002:merge"
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
"""Byte-order marks and the encoding each announces (UTF-32's first: its little-endian mark starts like UTF-16's)."""

SAVE_AS_UTF8 = "save the file as UTF-8 (UTF-16 or UTF-32 with a byte-order mark is read too)"
NOT_UTF8 = Problem("{where}: not UTF-8 text ({detail})", SAVE_AS_UTF8, ConfigError, CONFIGURATION)
NUL_BYTES = Problem("{where}: the file holds NUL bytes (UTF-16 or UTF-32 without a byte-order mark, or no text at all)",
                    SAVE_AS_UTF8, ConfigError, CONFIGURATION)
BAD_CHARACTER = Problem("{where}: the character {character} is not allowed in YAML",
                        'remove it, or write it as an escape inside double quotes ("\\u00a0")', ConfigError,
                        CONFIGURATION)
INVALID_YAML = Problem("{where}: invalid YAML: {problem}",
                       "fix that line (indentation, a ':' after each key, matching quotes and brackets)", ConfigError,
                       CONFIGURATION)
DUPLICATE_KEY = Problem("{where}: duplicate key '{key}' (first at line {first})",
                        "keep one of them: YAML would silently use the last", ConfigError, CONFIGURATION)
NOT_TEXT_KEY = Problem("{where}: the key {raw} is read by YAML as {kind}, not as text",
                       "quote it to mean the text: '{raw}':", ConfigError, CONFIGURATION)
COMPLEX_KEY = Problem("{where}: a key that is {kind}", "a key is plain text: write `name: value`", ConfigError,
                      CONFIGURATION)
BAD_MERGE = Problem("{where}: '<<' merges {kind}", "merge a mapping (<<: *anchor) or a list of mappings "
                    "(<<: [*a, *b])", ConfigError, CONFIGURATION)
RECURSIVE_ALIAS = Problem("{where}: an alias refers to a mapping or list it is itself inside of",
                          "point the alias at a node outside it, or write the value out", ConfigError, CONFIGURATION)
UNKNOWN_TAG = Problem("{where}: the tag {tag} is not one torchdev reads", "write the plain value, without a tag "
                      "(torchdev reads text, numbers, booleans, null, lists and mappings)", ConfigError,
                      CONFIGURATION)
TOO_DEEP = Problem("{where}: nested more than {limit} levels deep", "images.yaml needs five levels at most: write "
                   "it flatter", ConfigError, CONFIGURATION)
TOO_LARGE = Problem("{path}: expands to more than {limit} values once its aliases are followed",
                    "write the values out, or use fewer aliases of aliases", ConfigError, CONFIGURATION)
EMPTY_FILE = Problem("{path}: the file is empty", "it must be a mapping: images.yaml's keys (image, variants, ...), "
                     "or in an overlay those it changes", ConfigError, CONFIGURATION)
NOT_A_MAPPING = Problem("{path}:1: the top level must be a mapping, not {kind}",
                        "write `key: value` lines at the top (image:, variants:, ...)", ConfigError, CONFIGURATION)
UNREADABLE = Problem("{path}: cannot read it ({reason})", "check that the file is there and readable", ConfigError,
                     CONFIGURATION)


@dataclass(frozen=True)
class Origin:
    """The file and 1-based line a key was written at."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class SourcedDict(dict):
    """A mapping that records the Origin of each of its keys, and the text of each value YAML read as something other
    than text (`raw`: key -> "3.10" for the number 3.1)."""

    def __init__(self, *args: Any, origins: dict[str, Origin] | None = None, where: Origin | None = None,
                 raw: dict[str, str] | None = None):
        super().__init__(*args)
        self.origins: dict[str, Origin] = dict(origins or {})
        self.where = where
        self.raw: dict[str, str] = dict(raw or {})

    def origin(self, key: str) -> Origin | None:
        return self.origins.get(key, self.where)

    def relocated(self, where: Origin | None) -> SourcedDict:
        """The same keys and values, found at `where` (an alias's copy is where the alias is)."""
        return SourcedDict(self, origins=self.origins, where=where, raw=self.raw)


class SourcedList(list):
    """A list that records the Origin of each item, and the text of each item YAML read as something other than
    text."""

    def __init__(self, *args: Any, where: Origin | None = None):
        super().__init__(*args)
        self.where = where
        self.origins: list[Origin] = []
        self.raw: list[str | None] = []

    def origin(self, index: int) -> Origin | None:
        return self.origins[index] if 0 <= index < len(self.origins) else self.where


def yaml_kind(value: Any) -> str:
    """What YAML made of a value, in words: "a number", "a boolean", "null", "a date", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    kinds = ((str, "text"), (dict, "a mapping"), (list, "a list"), (bytes, "binary data"), (set, "a set"))
    found = next((what for kind, what in kinds if isinstance(value, kind)), "")
    return found or ("a date" if type(value).__name__ in ("date", "datetime") else f"a {type(value).__name__}")


def _loader_for(file: str) -> type[yaml.SafeLoader]:
    class SourcedLoader(yaml.SafeLoader):
        depth = 0

        def origin(self, node: Node) -> Origin:
            return Origin(file, node.start_mark.line + 1)

        def compose_node(self, parent: Node | None, index: Any) -> Node | None:
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise TOO_DEEP(where=Origin(file, mark.line + 1), limit=MAX_DEPTH)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def pairs(self, node: MappingNode) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
            """(the mapping's own key/value nodes, those its merge keys bring in, earlier merges first)."""
            own: list[tuple[Node, Node]] = []
            merged: list[tuple[Node, Node]] = []
            for key_node, value_node in node.value:
                if key_node.tag != MERGE_TAG:
                    own.append((key_node, value_node))
                    continue
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        kind = "a list" if isinstance(source, SequenceNode) else f"the scalar '{source.value}'"
                        raise BAD_MERGE(where=self.origin(key_node), kind=kind)
                    inner_own, inner_merged = self.pairs(source)
                    merged += inner_own + inner_merged
            return own, merged

        def key(self, key_node: Node) -> str:
            if not isinstance(key_node, ScalarNode):
                kind = "a mapping" if isinstance(key_node, MappingNode) else "a list"
                raise COMPLEX_KEY(where=self.origin(key_node), kind=kind)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise NOT_TEXT_KEY(where=self.origin(key_node), raw=key_node.value or "~", kind=yaml_kind(key))
            return key

        def value(self, value_node: Node, at: Origin) -> tuple[Any, str | None]:
            """The constructed value (a mapping is copied to where it is used), and its text when YAML read a
            scalar as something other than text."""
            value = self.construct_object(value_node, deep=True)
            if isinstance(value, SourcedDict):
                value = value.relocated(at)
            raw = value_node.value if isinstance(value_node, ScalarNode) and not isinstance(value, str) else None
            return value, raw

        def construct_sourced_mapping(self, node: MappingNode) -> SourcedDict:
            mapping = SourcedDict(where=self.origin(node))
            own, merged = self.pairs(node)
            for key_node, value_node in own:
                key, at = self.key(key_node), self.origin(key_node)
                if key in mapping:
                    raise DUPLICATE_KEY(where=at, key=key, first=mapping.origins[key].line)
                self.add(mapping, key, at, value_node)
            for key_node, value_node in merged:
                key = self.key(key_node)
                if key not in mapping:
                    self.add(mapping, key, self.origin(key_node), value_node)
            return mapping

        def add(self, mapping: SourcedDict, key: str, at: Origin, value_node: Node) -> None:
            mapping[key], raw = self.value(value_node, at)
            mapping.origins[key] = at
            if raw is not None:
                mapping.raw[key] = raw

        def construct_sourced_sequence(self, node: SequenceNode) -> SourcedList:
            items = SourcedList(where=self.origin(node))
            for child in node.value:
                value, raw = self.value(child, self.origin(child))
                items.append(value)
                items.origins.append(self.origin(child))
                items.raw.append(raw)
            return items

    SourcedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  SourcedLoader.construct_sourced_mapping)
    SourcedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                                  SourcedLoader.construct_sourced_sequence)
    return SourcedLoader


def decode(path: Path, data: bytes) -> str:
    """The text of a YAML file: by its byte-order mark, else UTF-8; anything else is one line saying how to save it."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff")
            except UnicodeDecodeError as error:
                raise NOT_UTF8(where=f"{path}", detail=f"{encoding.upper()} by its byte-order mark, but byte "
                               f"{error.start} is not: {error.reason}") from None
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise NUL_BYTES(where=f"{path}:{line}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise NOT_UTF8(where=f"{path}:{line}", detail=f"byte 0x{data[error.start]:02x} {error.reason}") from None


def _invalid(path: Path, text: str, error: yaml.YAMLError) -> ConfigError:
    """PyYAML's error as one line with the file and line."""
    if isinstance(error, yaml.reader.ReaderError):
        line = text[:error.position].count("\n") + 1
        return BAD_CHARACTER(where=f"{path}:{line}", character=f"U+{error.character:04X}"
                             if isinstance(error.character, int) else repr(error.character))
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = error.problem or error.context or "unreadable"
        if "recursive" in problem:
            return RECURSIVE_ALIAS(where=where)
        if problem.startswith("could not determine a constructor for the tag"):
            return UNKNOWN_TAG(where=where, tag=problem.rsplit(" ", 1)[-1])
        return INVALID_YAML(where=where, problem=problem)
    return INVALID_YAML(where=str(path), problem=str(error).splitlines()[0] if str(error) else type(error).__name__)


def count_values(data: Any, path: Path, *, limit: int = MAX_VALUES) -> int:
    """How many values `data` holds once every alias is followed; TOO_LARGE past `limit` (checked as it counts, so a
    billion laughs fails in a moment)."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            raise TOO_LARGE(path=path, limit=limit)
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def load_yaml(path: Path) -> SourcedDict:
    """Parse one YAML file into SourcedDicts and SourcedLists; an empty or non-mapping file is a ConfigError."""
    try:
        if input_file(path, role="configuration") is None:
            raise UNREADABLE(path=path, reason="no such file")
        data_bytes = path.read_bytes()
    except OSError as error:
        raise UNREADABLE(path=path, reason=error.strerror or str(error)) from None
    return parse_yaml(path, decode(path, data_bytes))


def parse_yaml(path: Path, text: str) -> SourcedDict:
    """`text` parsed as the content of `path` (what load_yaml reads there; a file about to be written, checked
    before it is)."""
    try:
        data = yaml.load(text, Loader=_loader_for(str(path)))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise _invalid(path, text, error) from None
    except RecursionError:
        raise TOO_DEEP(where=str(path), limit=MAX_DEPTH) from None
    if data is None:
        raise EMPTY_FILE(path=path)
    if not isinstance(data, SourcedDict):
        raise NOT_A_MAPPING(path=path, kind=yaml_kind(data))
    count_values(data, path)
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
    merged = SourcedDict(base, origins=base.origins, where=base.where, raw=base.raw)
    for key, value in overlay.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
        merged.origins[key] = overlay.origins[key]
        merged.raw.pop(key, None)
        if key in overlay.raw:
            merged.raw[key] = overlay.raw[key]
    return merged
