"""Vertex AI request bodies checked against Google's published description of the API.

The description is the discovery document of ``aiplatform`` v1 (revision 20261106, as shipped
in google-api-python-client's ``discovery_cache/documents/aiplatform.v1.json``), an unmodified
copy of ``shared/specs/vertex-aiplatform-v1-discovery.json`` kept gzipped beside this module
with its licence (or the one in ``$TUNEFLEET_SPECS``). In it a schema
is ``{"id", "type": "object", "properties": {...}}``; a property has ``type`` (string,
integer, number, boolean, array, object, any) with ``format`` (int32, uint32, int64, uint64,
float, double, byte, google-datetime, google-duration, google-fieldmask), or ``$ref``;
``items`` for arrays, ``additionalProperties`` for maps, ``enum`` for enums. Output-only
properties carry ``"readOnly": true``; required ones are marked only by a description that
starts with "Required." (the discovery format has no ``required`` list).

:func:`violations` walks a JSON body against one schema and names, by JSON path from ``$``:
an unknown property, a wrong JSON type (int64/uint64 must be JSON strings of digits, as proto3
JSON writes them; doubles and floats numbers or "NaN"/"Infinity"; enums one of the listed
names), a ``google-datetime`` that is not RFC 3339, a ``google-duration`` that is not proto3
JSON's ``"3600s"`` form, ``byte`` that is not base64, and, in a request (``response=False``),
an output-only property sent and a "Required." property missing.

The aiplatform_v1 clients send enums as proto NUMBERS (``$alt=json;enum-encoding=int``), and
the discovery document's enum lists are not in proto order (acceleratorType NVIDIA_TESLA_A100
is index 6 in the document, 8 on the wire). :func:`decode` therefore reads a request body with
the proto type first (``Type.from_json(raw, ignore_unknown_fields=False)``, which also refuses
unknown fields) and writes it back with enum names (``Type.to_json(...,
use_integers_for_enums=False)``); :func:`request_violations` walks that. A body the proto type
cannot read is itself a violation.

"Required." is demanded only where its object is present: ``EncryptionSpec.kmsKeyName`` only
when ``encryptionSpec`` is sent. A proto3 JSON writer leaves out a field holding its default,
so an empty "Required." string (an ``EnvVar`` with ``value: ""``) reads as missing here, and
Vertex refuses it the same way: "400 INVALID_ARGUMENT: Field:
reasoning_engine.spec.deployment_spec.env[6].value; Message: Required field is not set." (as
quoted from the service in public deployment notes). ``NOT_REQUIRED_IN_REQUEST`` lists the
exceptions the checker makes (none so far).
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "DISCOVERY",
    "decode",
    "discovery",
    "request_violations",
    "schema",
    "violations",
]

NAME = "vertex-aiplatform-v1-discovery.json"
SPECS = Path(os.environ["TUNEFLEET_SPECS"]) if os.environ.get("TUNEFLEET_SPECS") else None
DISCOVERY = SPECS / NAME if SPECS is not None else Path(__file__).parent / "specs" / f"{NAME}.gz"
"""``$TUNEFLEET_SPECS/vertex-aiplatform-v1-discovery.json`` where set, else the copy kept
beside this module (gzipped, with its licence): an unmodified copy of
``shared/specs/vertex-aiplatform-v1-discovery.json`` (revision 20261106), so a clone
anywhere checks every body against the same document."""
PREFIX = "GoogleCloudAiplatformV1"

NOT_REQUIRED_IN_REQUEST: dict[tuple[str, str], str] = {}
"""(schema id, property) -> why a "Required." property is not demanded in a request."""

_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_INT = re.compile(r"^-?\d+$")
_UINT = re.compile(r"^\d+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


@functools.cache
def discovery() -> dict[str, Any] | None:
    """The discovery document (loaded once), or None where it is not on this machine."""
    if not DISCOVERY.is_file():
        return None
    raw = DISCOVERY.read_bytes()
    if DISCOVERY.suffix == ".gz":
        raw = gzip.decompress(raw)
    return json.loads(raw)  # type: ignore[no-any-return]


def schema(schema_id: str) -> dict[str, Any]:
    """A schema of the document by id; ``"CustomJob"`` is short for
    ``"GoogleCloudAiplatformV1CustomJob"``."""
    document = discovery()
    if document is None:
        raise FileNotFoundError(f"Vertex AI's discovery document is not at {DISCOVERY}")
    schemas = document["schemas"]
    if schema_id not in schemas and PREFIX + schema_id in schemas:
        schema_id = PREFIX + schema_id
    return schemas[schema_id]  # type: ignore[no-any-return]


def violations(schema_id: str, body: Any, *, response: bool = False) -> list[str]:
    """What is wrong with ``body`` as the schema ``schema_id``: ``"<JSON path>: <what>"``
    each. ``response=True`` checks an answer: output-only properties are expected there and
    "Required." is not checked (an answer leaves out what holds its default)."""
    out: list[str] = []
    _object(schema(schema_id), body, "$", out, response)
    return out


def decode(
    type_name: str, raw: bytes | str | dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """Read a REST body as ``google.cloud.aiplatform_v1.types.<type_name>`` and write it back
    as proto3 JSON with enum NAMES and lowerCamel names, defaults left out. Returns
    ``(json, None)`` or ``(None, why it does not decode)``."""
    from google.cloud.aiplatform_v1 import types

    proto_type = getattr(types, type_name)
    if isinstance(raw, dict):
        raw = json.dumps(raw)
    try:
        message = proto_type.from_json(raw, ignore_unknown_fields=False)
    except Exception as error:  # json_format.ParseError, ValueError, TypeError
        return (
            None,
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else error!r}",
        )
    text = proto_type.to_json(
        message,
        use_integers_for_enums=False,
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=False,
    )
    return json.loads(text), None


def request_violations(
    type_name: str, raw: bytes | str | dict[str, Any], *, schema_id: str | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """Decode ``raw`` with the proto type ``type_name`` and walk the result against the
    discovery schema ``schema_id`` (default: the same name). Returns the decoded body (None
    if it did not decode) and the violations; without the discovery document only the
    decode is checked."""
    decoded, why = decode(type_name, raw)
    if decoded is None:
        return None, [f"$: not a valid {type_name} (proto3 JSON): {why}"]
    if discovery() is None:
        return decoded, []
    return decoded, violations(schema_id or PREFIX + type_name, decoded)


# --- the walk ------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_$@][\w$@-]*", key) else f"{path}[{key!r}]"


def _object(spec: dict[str, Any], body: Any, path: str, out: list[str], response: bool) -> None:
    if not isinstance(body, dict):
        out.append(f"{path}: expected object ({spec.get('id', 'object')}), got {_json_type(body)}")
        return
    properties: dict[str, Any] = spec.get("properties") or {}
    schema_id = str(spec.get("id", ""))
    for key, value in body.items():
        prop = properties.get(key)
        where = _child(path, key)
        if prop is None:
            out.append(f"{where}: unknown property of {schema_id or 'object'}")
            continue
        if prop.get("readOnly") and not response:
            out.append(f"{where}: output-only property sent (readOnly in {schema_id})")
            continue
        _value(prop, value, where, out, response)
    if response:
        return
    for key, prop in properties.items():
        description = str(prop.get("description", ""))
        if (
            description.startswith("Required.")
            and not prop.get("readOnly")
            and key not in body
            and (schema_id, key) not in NOT_REQUIRED_IN_REQUEST
        ):
            out.append(f"{_child(path, key)}: required property missing ({schema_id})")


def _value(prop: dict[str, Any], value: Any, path: str, out: list[str], response: bool) -> None:
    if "$ref" in prop:
        _object(schema(prop["$ref"]), value, path, out, response)
        return
    kind = prop.get("type")
    fmt = prop.get("format")
    if kind == "any" or kind is None:
        return
    if kind == "array":
        if not isinstance(value, list):
            out.append(f"{path}: expected array, got {_json_type(value)}")
            return
        for index, item in enumerate(value):
            _value(prop.get("items") or {}, item, f"{path}[{index}]", out, response)
        return
    if kind == "object":
        if not isinstance(value, dict):
            out.append(f"{path}: expected object, got {_json_type(value)}")
            return
        if "additionalProperties" in prop:
            for key, item in value.items():
                _value(prop["additionalProperties"], item, _child(path, key), out, response)
        elif "properties" in prop:
            _object(prop, value, path, out, response)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected boolean, got {_json_type(value)}")
        return
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected integer ({fmt}), got {_json_type(value)}")
        elif fmt == "uint32" and value < 0:
            out.append(f"{path}: expected a non-negative integer (uint32), got {value}")
        return
    if kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or value in (
            "NaN",
            "Infinity",
            "-Infinity",
        )
        if not ok:
            out.append(f"{path}: expected number ({fmt}), got {_json_type(value)}")
        return
    if kind != "string":
        return
    if not isinstance(value, str):
        what = f"string ({fmt})" if fmt else "string"
        out.append(f"{path}: expected {what}, got {_json_type(value)}")
        return
    enum = prop.get("enum")
    if enum is not None and value not in enum:
        out.append(f"{path}: {value!r} is not one of {', '.join(enum)}")
    elif fmt == "int64" and not _INT.match(value):
        out.append(f"{path}: expected an int64 as a string of digits, got {value!r}")
    elif fmt == "uint64" and not _UINT.match(value):
        out.append(f"{path}: expected a uint64 as a string of digits, got {value!r}")
    elif fmt == "google-duration" and not _DURATION.match(value):
        out.append(f"{path}: expected a duration such as '3600s', got {value!r}")
    elif fmt == "google-datetime" and not _datetime(value):
        out.append(f"{path}: expected an RFC 3339 timestamp, got {value!r}")
    elif fmt == "byte" and not _base64(value):
        out.append(f"{path}: expected base64 bytes, got {value[:40]!r}")


def _datetime(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("z", "Z"))
    except ValueError:
        return False
    return True


def _base64(value: str) -> bool:
    padded = value + "=" * (-len(value) % 4)
    try:
        base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
