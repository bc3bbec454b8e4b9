"""Azure Resource Manager bodies checked against the models Microsoft generates for its SDKs.

The REST description of Azure Machine Learning (azure-rest-api-specs,
specification/machinelearningservices, ~790 KB per api-version) is not among the specs the
tests have. What is here, inside the wheels the provider already depends on, are the models
generated from it, and they carry every rule the checker needs:

* ``package="ml"``: ``azure.ai.ml._restclient.arm_ml_service.models`` of azure-ai-ml
  1.35.2, generated from the TypeSpec of api-version 2025-12-01 (the version the
  ``MachineLearningServicesMgmtClient`` sends by default). Each field is
  ``rest_field(name=<wire name>, visibility=[...])`` under a type annotation: the
  annotation says the JSON type, ``Optional[...]`` that the property may be left out (any
  other is required), ``visibility=["read"]`` that it is output-only. A polymorphic base
  keeps its kinds in ``__mapping__`` keyed by the value of its ``rest_discriminator`` field
  (``jobType``, ``dataType``, ``jobInputType``, ``endpointComputeType``...). Enums are
  typed ``Union[str, SomeEnum]`` (extensible: any string, as Azure's "known values" are)
  or, for discriminators, ``Literal[...]`` (checked strictly).
* ``package="monitor"``: ``azure.mgmt.monitor.models`` of azure-mgmt-monitor 7.0.0, msrest
  models generated from Microsoft.Insights' Swagger (autoscale settings: api-version
  2022-10-01). ``_attribute_map`` gives wire keys (dotted keys such as
  ``properties.profiles`` are flattened from a nested object) and msrest type names,
  ``_validation`` gives ``required`` and ``readonly``, ``_subtype_map`` polymorphism.

:func:`violations` walks a JSON body (what went over the wire, after ``json.loads``)
against one model and names, by JSON path, each unknown property, wrong JSON type (an
integer sent as a string, a string where an object belongs), read-only property sent,
required property missing, unknown discriminator value (listing the known ones), value
outside a ``Literal``, and date-time or ISO 8601 duration that does not parse. With
``response=True`` it checks an answer instead: read-only properties are expected there,
write-only ones (``visibility`` without ``"read"``, e.g. an endpoint's ``keys``) are not.
The models carry no patterns, lengths or ranges, so those are not checked here (the fake
enforces the naming rules it cites). Introspection is cached per class.
"""

from __future__ import annotations

import datetime
import enum
import functools
import importlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ML_MODELS", "MONITOR_MODELS", "violations"]

ML_MODELS = "azure.ai.ml._restclient.arm_ml_service.models"
MONITOR_MODELS = "azure.mgmt.monitor.models"

Package = Literal["ml", "monitor"]

# ISO 8601 durations as Azure writes them (PT30M, P1D, PT1H30M, PT0.5S).
_DURATION = re.compile(
    r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)
# msrest keys: a dot nests (properties.profiles), an escaped dot does not (odata\.type).
_KEY_SPLIT = re.compile(r"(?<!\\)\.")


def violations(
    model: str, body: Any, *, package: Package = "ml", response: bool = False
) -> list[str]:
    """What is wrong with ``body`` as a ``model`` (a class name of ``package``).

    Each violation is ``"<JSON path>: <what>"`` with the path from ``$`` (the body).
    ``response=True`` checks an answer rather than a request.
    """
    out: list[str] = []
    if package == "ml":
        _ml_model(_ml_class(model), body, "$", out, response)
    else:
        _msrest_model(_msrest_class(model), body, "$", out, response)
    return out


# --- JSON ------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_$@][\w$@-]*", key) else f"{path}[{key!r}]"


def _scalar(kind: str, value: Any, path: str, out: list[str]) -> None:
    """Check a JSON scalar of ``kind``: str, int, float, bool, date-time, duration."""
    ok: bool
    if kind == "bool":
        ok = isinstance(value, bool)
        expected = "boolean"
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "integer"
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "number"
    else:
        ok = isinstance(value, str)
        expected = {"date-time": "date-time string", "duration": "ISO 8601 duration string"}.get(
            kind, "string"
        )
        if ok and kind == "date-time":
            try:
                datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                out.append(f"{path}: {value!r} is not an ISO 8601 date-time")
        elif ok and kind == "duration" and not _DURATION.match(value):
            out.append(f"{path}: {value!r} is not an ISO 8601 duration (e.g. PT30M)")
    if not ok:
        out.append(f"{path}: expected {expected}, got {_json_type(value)}")


# --- azure-ai-ml's TypeSpec models -----------------------------------------------------


@dataclass(frozen=True)
class _Field:
    wire: str
    annotation: Any
    visibility: tuple[str, ...] | None
    discriminator: bool

    @property
    def read_only(self) -> bool:
        return self.visibility == ("read",)

    @property
    def readable(self) -> bool:
        return self.visibility is None or "read" in self.visibility

    @property
    def writable(self) -> bool:
        return self.visibility is None or bool({"create", "update"} & set(self.visibility))

    @property
    def required(self) -> bool:
        return self.annotation is not Any and not _nullable(self.annotation)


def _nullable(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)


@functools.cache
def _ml_base() -> tuple[Any, Any]:
    base = importlib.import_module("azure.ai.ml._restclient.arm_ml_service._utils.model_base")
    return base.Model, base._RestField


@functools.cache
def _ml_namespace() -> dict[str, Any]:
    package = importlib.import_module(ML_MODELS)
    generated = importlib.import_module(ML_MODELS + "._models")
    # Annotations name other models as "_models.X", imported under TYPE_CHECKING only.
    return {**vars(generated), "_models": package}


@functools.cache
def _ml_class(name: str) -> type:
    found = getattr(importlib.import_module(ML_MODELS), name, None)
    model, _ = _ml_base()
    if not (isinstance(found, type) and issubclass(found, model)):
        raise KeyError(f"{name} is not a model of {ML_MODELS}")
    return found


@functools.cache
def _ml_fields(cls: type) -> dict[str, _Field]:
    """The wire fields of ``cls``, its own and inherited (a subclass's redefinition wins)."""
    _, rest_field = _ml_base()
    hints = typing.get_type_hints(cls, globalns=_ml_namespace())
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, rest_field):
                found[attr] = value
    fields: dict[str, _Field] = {}
    for attr, rf in found.items():
        visibility = rf._visibility
        fields[rf._rest_name_input or attr] = _Field(
            wire=rf._rest_name_input or attr,
            annotation=hints.get(attr, Any),
            visibility=tuple(visibility) if visibility is not None else None,
            discriminator=bool(rf._is_discriminator),
        )
    return fields


def _ml_discriminator(cls: type, seen: set[str]) -> str | None:
    """The wire name of the discriminator ``cls``'s ``__mapping__`` is keyed by."""
    _, rest_field = _ml_base()
    own = [v for v in vars(cls).values() if isinstance(v, rest_field) and v._is_discriminator]
    for field in own:
        if field._rest_name_input not in seen:
            return str(field._rest_name_input)
    for wire, field in _ml_fields(cls).items():
        if field.discriminator and wire not in seen:
            return wire
    return None


def _ml_kinds(cls: type, discriminator: str) -> dict[str, type]:
    """Discriminator value -> class, without the entries ``__init_subclass__`` files under
    a class name for intermediate classes that declare no discriminator value."""
    mapping: dict[str, type] = vars(cls)["__mapping__"]
    kinds: dict[str, type] = {}
    for key, sub in mapping.items():
        field = _ml_fields(sub).get(discriminator)
        literal = field is not None and typing.get_origin(field.annotation) is Literal
        if literal and field is not None:
            values = {
                a.value if isinstance(a, enum.Enum) else a
                for a in typing.get_args(field.annotation)
            }
            if key not in values:
                continue
        elif key == sub.__name__:
            continue
        kinds[key] = sub
    return kinds


def _ml_concrete(cls: type, value: dict[str, Any], path: str, out: list[str]) -> type | None:
    """Follow the discriminators from ``cls`` to the class ``value`` is an instance of."""
    seen: set[str] = set()
    while vars(cls).get("__mapping__"):
        discriminator = _ml_discriminator(cls, seen)
        if discriminator is None:
            break
        seen.add(discriminator)
        kinds = _ml_kinds(cls, discriminator)
        known = ", ".join(sorted(kinds))
        tag = value.get(discriminator)
        if tag is None:
            out.append(
                f"{_child(path, discriminator)}: discriminator of {cls.__name__} missing"
                f" (known: {known})"
            )
            return None
        sub = kinds.get(tag) if isinstance(tag, str) else None
        if sub is None:
            out.append(
                f"{_child(path, discriminator)}: unknown {cls.__name__} kind {tag!r}"
                f" (known: {known})"
            )
            return None
        if sub is cls:
            break
        cls = sub
    return cls


def _ml_model(cls: type, value: Any, path: str, out: list[str], response: bool) -> None:
    if not isinstance(value, dict):
        out.append(f"{path}: expected an object ({cls.__name__}), got {_json_type(value)}")
        return
    concrete = _ml_concrete(cls, value, path, out)
    if concrete is None:
        return
    fields = _ml_fields(concrete)
    name = concrete.__name__
    for key in value:
        if key not in fields:
            out.append(f"{_child(path, key)}: unknown property of {name}")
    for wire, field in fields.items():
        where = _child(path, wire)
        if wire not in value:
            needed = field.readable if response else field.writable
            if field.required and needed:
                out.append(f"{where}: required property of {name} missing")
            continue
        if response and not field.readable:
            out.append(f"{where}: write-only property of {name} in a response")
            continue
        if not response and field.read_only:
            out.append(f"{where}: read-only property of {name} sent")
            continue
        _ml_value(field.annotation, value[wire], where, out, response)


def _ml_value(annotation: Any, value: Any, path: str, out: list[str], response: bool) -> None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return
    if value is None:
        if not _nullable(annotation):
            out.append(f"{path}: null where a value is required")
        return
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if str in members and all(a is str or _is_enum(a) for a in members):
            # Union[str, SomeEnum]: an extensible enum, any string (Azure's "known values").
            _scalar("str", value, path, out)
            return
        attempts: list[list[str]] = []
        for member in members:
            found: list[str] = []
            _ml_value(member, value, path, found, response)
            if not found:
                return
            attempts.append(found)
        out.extend(sorted(attempts, key=len)[0])  # the member it came closest to
        return
    if origin is Literal:
        allowed = [a.value if isinstance(a, enum.Enum) else a for a in args]
        if value not in allowed:
            out.append(f"{path}: {value!r} is not one of {allowed}")
        return
    if origin in (list, Sequence, typing.List):  # noqa: UP006 (older generated code)
        if not isinstance(value, list):
            out.append(f"{path}: expected an array, got {_json_type(value)}")
            return
        for index, item in enumerate(value):
            _ml_value(args[0] if args else Any, item, f"{path}[{index}]", out, response)
        return
    if origin in (dict, Mapping, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object, got {_json_type(value)}")
            return
        for key, item in value.items():
            _ml_value(args[1] if len(args) > 1 else Any, item, _child(path, key), out, response)
        return
    if not isinstance(annotation, type):
        return  # a construct the generated models do not use: nothing to check against
    model, _ = _ml_base()
    if issubclass(annotation, model):
        _ml_model(annotation, value, path, out, response)
    elif _is_enum(annotation):
        allowed = [m.value for m in typing.cast(type[enum.Enum], annotation)]
        if value not in allowed:
            out.append(f"{path}: {value!r} is not one of {allowed}")
    else:
        _scalar(_scalar_kind(annotation), value, path, out)


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _scalar_kind(annotation: type) -> str:
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is datetime.datetime:
        return "date-time"
    if annotation is datetime.timedelta:
        return "duration"
    return "str"  # str, date, time, bytes (base64)


# --- azure-mgmt-monitor's msrest models ------------------------------------------------

_MSREST_SCALARS = {
    "str": "str",
    "int": "int",
    "long": "int",
    "unix-time": "int",
    "float": "float",
    "decimal": "float",
    "bool": "bool",
    "iso-8601": "date-time",
    "rfc-1123": "str",
    "date": "str",
    "time": "str",
    "duration": "duration",
    "bytearray": "str",
    "base64": "str",
}


@dataclass(frozen=True)
class _Entry:
    attr: str
    parts: tuple[str, ...]
    type: str
    required: bool
    readonly: bool


@functools.cache
def _msrest_class(name: str) -> type:
    found = getattr(importlib.import_module(MONITOR_MODELS), name, None)
    if not (isinstance(found, type) and hasattr(found, "_attribute_map")):
        raise KeyError(f"{name} is not a model of {MONITOR_MODELS}")
    return found


@functools.cache
def _msrest_entries(cls: type) -> tuple[_Entry, ...]:
    validation: dict[str, dict[str, Any]] = getattr(cls, "_validation", {})
    entries = []
    for attr, spec in cls._attribute_map.items():  # type: ignore[attr-defined]
        rules = validation.get(attr, {})
        if rules.get("constant"):
            continue
        parts = tuple(p.replace("\\.", ".") for p in _KEY_SPLIT.split(spec["key"]))
        entries.append(
            _Entry(
                attr=attr,
                parts=parts,
                type=spec["type"],
                required=bool(rules.get("required")),
                readonly=bool(rules.get("readonly")),
            )
        )
    return tuple(entries)


def _msrest_concrete(cls: type, value: dict[str, Any], path: str, out: list[str]) -> type | None:
    subtypes: dict[str, dict[str, str]] = getattr(cls, "_subtype_map", {}) or {}
    for attr, kinds in subtypes.items():
        key = cls._attribute_map[attr]["key"].replace("\\.", ".")  # type: ignore[attr-defined]
        tag = value.get(key)
        known = ", ".join(sorted(kinds))
        if tag is None:
            out.append(
                f"{_child(path, key)}: discriminator of {cls.__name__} missing (known: {known})"
            )
            return None
        if tag not in kinds:
            out.append(f"{_child(path, key)}: unknown {cls.__name__} kind {tag!r} (known: {known})")
            return None
        sub = _msrest_class(kinds[tag])
        return sub if sub is cls else _msrest_concrete(sub, value, path, out)
    return cls


def _msrest_model(cls: type, value: Any, path: str, out: list[str], response: bool) -> None:
    if not isinstance(value, dict):
        out.append(f"{path}: expected an object ({cls.__name__}), got {_json_type(value)}")
        return
    concrete = _msrest_concrete(cls, value, path, out)
    if concrete is not None:
        _msrest_level(concrete, _msrest_entries(concrete), (), value, path, out, response)


def _msrest_level(
    cls: type,
    entries: tuple[_Entry, ...],
    prefix: tuple[str, ...],
    value: dict[str, Any],
    path: str,
    out: list[str],
    response: bool,
) -> None:
    """One level of a (possibly flattened) msrest model: ``prefix`` is the nesting so far."""
    depth = len(prefix)
    level = [e for e in entries if e.parts[:depth] == prefix]
    leaves = {e.parts[depth]: e for e in level if len(e.parts) == depth + 1}
    groups = {e.parts[depth] for e in level if len(e.parts) > depth + 1}
    name = cls.__name__
    for key in value:
        if key not in leaves and key not in groups:
            out.append(f"{_child(path, key)}: unknown property of {name}")
    for key, entry in leaves.items():
        where = _child(path, key)
        if key not in value:
            if entry.required and not entry.readonly:
                out.append(f"{where}: required property of {name} missing")
            continue
        if entry.readonly and not response:
            out.append(f"{where}: read-only property of {name} sent")
            continue
        _msrest_value(entry.type, value[key], where, out, response)
    for key in groups:
        where = _child(path, key)
        nested = value.get(key)
        if nested is None:
            for entry in level:
                if entry.parts[depth] == key and entry.required and not entry.readonly:
                    out.append(
                        f"{path}.{'.'.join(entry.parts[depth:])}: required property of {name} missing"
                    )
            continue
        if not isinstance(nested, dict):
            out.append(f"{where}: expected an object, got {_json_type(nested)}")
            continue
        _msrest_level(cls, entries, (*prefix, key), nested, where, out, response)


def _msrest_value(kind: str, value: Any, path: str, out: list[str], response: bool) -> None:
    if value is None:
        return  # msrest serializes an unset optional as absent; null is read as unset
    if kind.startswith("[") and kind.endswith("]"):
        if not isinstance(value, list):
            out.append(f"{path}: expected an array, got {_json_type(value)}")
            return
        for index, item in enumerate(value):
            _msrest_value(kind[1:-1], item, f"{path}[{index}]", out, response)
        return
    if kind.startswith("{") and kind.endswith("}"):
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object, got {_json_type(value)}")
            return
        for key, item in value.items():
            _msrest_value(kind[1:-1], item, _child(path, key), out, response)
        return
    if kind == "object":
        return
    if kind in _MSREST_SCALARS:
        _scalar(_MSREST_SCALARS[kind], value, path, out)
        return
    found = getattr(importlib.import_module(MONITOR_MODELS), kind, None)
    if isinstance(found, type) and hasattr(found, "_attribute_map"):
        _msrest_model(found, value, path, out, response)
    elif _is_enum(found):
        _scalar("str", value, path, out)  # autorest enums are extensible: any string
