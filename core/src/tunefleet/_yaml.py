"""YAML documents with the line of every key, for error messages that say where.

PyYAML's composer gives each node its position; this module turns the node tree into plain
Python data plus a map from key path to 1-based line. It also refuses what PyYAML would
silently accept: duplicate keys (the last one would win), non-string keys, and alias
expansion beyond a fixed node budget (the "billion laughs" document).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from tunefleet.errors import SpecError

KeyPath = tuple[str | int, ...]

MAX_NODES = 100_000  # far above any real spec; bounds alias bombs

try:  # the C parser is several times faster when libyaml is present
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


class Positions:
    """Line numbers of the keys and items of one YAML document."""

    def __init__(self, lines: Mapping[KeyPath, int]) -> None:
        self._lines = dict(lines)

    def line_for(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def format_path(path: KeyPath) -> str:
    """``("targets", 0, "compute")`` -> ``targets[0].compute``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_document(text: str, source: str) -> tuple[Any, Positions]:
    """Parse one YAML document into plain data and the line of each key path.

    Raises SpecError naming ``source`` and the line for syntax errors, duplicate keys,
    non-string keys, multiple documents and alias bombs.
    """
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise SpecError.single(source, f"invalid YAML: {problem}", line=line) from None
        except yaml.YAMLError as exc:
            raise SpecError.single(source, f"invalid YAML: {exc}") from None
        if root is None:
            return None, Positions({})
        builder = _Builder(loader, source)
        data = builder.build(root, ())
        return data, Positions(builder.lines)
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source
        self._visited = 0
        self.lines: dict[KeyPath, int] = {}

    def _fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError.single(self._source, message, line=node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self._visited += 1
        if self._visited > MAX_NODES:
            raise self._fail(node, f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, f"invalid YAML value: {exc.problem}") from None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        self._loader.flatten_mapping(node)  # applies YAML merge keys (<<)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail(key_node, "mapping keys must be plain strings")
            key = self._loader.construct_object(key_node)
            if not isinstance(key, str):
                # `on:` or `1:` become bool/int in YAML; keys in a spec are always names.
                raise self._fail(key_node, f"key {key_node.value!r} must be a string (quote it)")
            if key in out:
                where = format_path((*path, key))
                raise self._fail(key_node, f"duplicate key {where!r}")
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key))
        return out
