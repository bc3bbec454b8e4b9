"""YAML documents with the line of every key, for error messages that say where.

PyYAML's composer gives each node its position; this module turns the node tree into plain
Python data plus a map from key path to 1-based line. It also refuses what PyYAML would
silently accept or fail on: duplicate keys (the last one would win), non-string keys,
explicit tags other than the standard scalar ones (``!!python/object``, ``!!set``, ``!foo``
would be ignored or break construction), aliases that contain themselves
(``a: &r [*r]``), nesting deeper than :data:`MAX_DEPTH`, scalars that do not fit their tag
(``!!int abc``), and alias expansion beyond a fixed node budget (the "billion laughs"
document). Each refusal is a SpecError naming the source and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import yaml

from tunefleet.errors import SpecError

KeyPath = tuple[str | int, ...]

MAX_NODES = 100_000  # far above any real spec; bounds alias bombs
MAX_DEPTH = 64  # far deeper than any real spec; keeps every recursive walk well in bounds

_CORE = "tag:yaml.org,2002:"
ALLOWED_SCALAR_TAGS = frozenset(
    {"!", *(_CORE + name for name in ("str", "int", "float", "bool", "null"))}
)
"""Explicit tags a scalar may carry (``!!str 123``); any other explicit tag is refused."""

try:  # the C parser is several times faster when libyaml is present
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader, reading ``1e-4`` as the number YAML 1.2 (and every user) means.

    YAML 1.1 wants a dot in a float (``1.0e-4``) and reads ``1e-4`` as a string, which
    strict validation would then refuse as "not a number".
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class Positions:
    """Line numbers of the keys and items of one YAML document."""

    def __init__(self, lines: Mapping[KeyPath, int]) -> None:
        self._lines = dict(lines)

    def written(self, path: KeyPath) -> KeyPath:
        """The longest start of ``path`` the document spells out (``dataset`` for the
        shorthand ``dataset: train.jsonl`` when asked for ``dataset.train``)."""
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in self._lines:
                return tuple(path[:end])
        return ()

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
    non-string keys, explicit tags, recursive aliases, deep nesting, multiple documents and
    alias bombs.
    """
    with _syntax_errors(source):
        _check_events(text, source)
    loader = _Loader(text)
    try:
        with _syntax_errors(source):
            root = loader.get_single_node()
        if root is None:
            return None, Positions({})
        builder = _Builder(loader, source)
        data = builder.build(root, ())
        return data, Positions(builder.lines)
    finally:
        loader.dispose()


@contextmanager
def _syntax_errors(source: str) -> Iterator[None]:
    """PyYAML's errors as a SpecError naming ``source`` and the line."""
    try:
        yield
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError.single(source, f"invalid YAML: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError.single(source, f"invalid YAML: {exc}") from None


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _collection(event: yaml.Event) -> str:
    return "mapping" if isinstance(event, yaml.MappingStartEvent) else "list"


def _check_events(text: str, source: str) -> None:
    """Refuse, from the parser's events, what the composer would accept silently: explicit
    tags that are not standard scalar types, aliases inside the node they name, nesting
    deeper than MAX_DEPTH."""
    open_nodes: set[int] = set()  # anchored collections not yet closed
    stack: list[int | None] = []
    latest: dict[str, int] = {}  # anchor -> its latest definition (anchors may be redefined)
    for number, event in enumerate(yaml.parse(text, Loader=_Loader)):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            if latest.get(event.anchor or "") in open_nodes:
                raise SpecError.single(
                    source, f"recursive alias *{event.anchor}: it refers to itself", line=line
                )
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            ended = stack.pop() if stack else None
            if ended is not None:
                open_nodes.discard(ended)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        tag = getattr(event, "tag", None)
        scalar = isinstance(event, yaml.ScalarEvent)
        if tag is not None and not (scalar and tag in ALLOWED_SCALAR_TAGS):
            kind = "value" if scalar else _collection(event)
            raise SpecError.single(
                source,
                f"YAML tag {_tag_name(tag)!r} on a {kind} is not allowed "
                "(a spec holds plain strings, numbers, booleans, lists and mappings)",
                line=line,
            )
        if event.anchor is not None:
            latest[event.anchor] = number
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise SpecError.single(
                    source, f"nested more than {MAX_DEPTH} levels deep", line=line
                )
            stack.append(number if event.anchor is not None else None)
            if event.anchor is not None:
                open_nodes.add(number)


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
        if len(path) > MAX_DEPTH:  # aliases nest documents the parser saw as shallow
            raise SpecError.single(
                self._source,
                f"{format_path(path[:1])} is nested more than {MAX_DEPTH} levels deep "
                "(through aliases)",
                line=self.lines.get(path[:1]),
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, f"invalid YAML value: {exc.problem}") from None
        except (ValueError, KeyError, TypeError, OverflowError):
            # `!!int abc`, `!!bool maybe`, an integer of more than 4300 digits
            tag = _tag_name(node.tag)
            raise self._fail(
                node, f"invalid YAML value: {_short(node.value)} is not a {tag}"
            ) from None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        try:
            self._loader.flatten_mapping(node)  # applies YAML merge keys (<<)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, f"invalid YAML merge key: {exc.problem}") from None
        except RecursionError:  # a chain of merges through hundreds of anchors
            raise self._fail(node, "YAML merge keys (<<) nested too deeply") from None
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


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
