"""Checks requests and responses against a service's published OpenAPI description.

Fakes of services with no emulator (the OpenAI API) call :meth:`OpenAPIContract.check_request`
and :meth:`OpenAPIContract.check_response` on every exchange, so a test fails when tunefleet
sends something the real service would not accept or the fake answers something the real
service would not say. The descriptions live outside the repository (``../shared/specs``,
or ``$TUNEFLEET_SPECS``); :func:`load_contract` returns None when one is absent and the
tests that need it skip, saying where they looked.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPECS = Path(os.environ.get("TUNEFLEET_SPECS") or Path(__file__).parents[2] / "shared" / "specs")
OPENAI_SPEC = SPECS / "openai-openapi.json"


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))


@dataclass
class OpenAPIContract:
    """One OpenAPI 3.1 document, ready to validate exchanges with jsonschema (2020-12)."""

    document: dict[str, Any]
    base_path: str = "/v1"
    checked: dict[str, int] = field(default_factory=dict)
    """Exchanges checked per operation id, for tests that must show they checked something."""

    def __post_init__(self) -> None:
        self._operations: list[Operation] = []
        for template, methods in self.document["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            for method, spec in methods.items():
                if method in {"get", "post", "put", "patch", "delete"}:
                    self._operations.append(
                        Operation(method.upper(), template, re.compile(f"^{regex}$"), spec)
                    )

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation serving ``method path`` (``path`` with the base path), if any."""
        local = path.split("?", 1)[0].removeprefix(self.base_path)
        # Literal segments beat parameters (`/files/{id}` vs a longer literal path).
        matches = [op for op in self._operations if op.method == method and op.pattern.match(local)]
        return min(matches, key=lambda op: op.template.count("{")) if matches else None

    def _validate(self, schema: dict[str, Any], value: Any, where: str) -> list[str]:
        rooted = {**schema, "components": self.document["components"]}
        validator = jsonschema.Draft202012Validator(rooted)
        return [
            f"{where}: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        ]

    def check_request(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        content_type: str | None,
        body: bytes,
    ) -> list[str]:
        """Problems with a request the client sent; [] when the description allows it."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in the API description"]
        self.checked[op.id] = self.checked.get(op.id, 0) + 1
        where = f"{op.id} request"
        problems = self._check_query(op, query, where)
        request_body = op.spec.get("requestBody")
        if request_body is None:
            return problems
        if not body:
            if request_body.get("required"):
                problems.append(f"{where}: a body is required")
            return problems
        media = (content_type or "").split(";", 1)[0].strip()
        content = request_body.get("content", {})
        if media not in content:
            return [*problems, f"{where}: content type {media!r} not in {sorted(content)}"]
        schema = content[media]["schema"]
        if media == "application/json":
            try:
                value = json.loads(body)
            except ValueError as exc:
                return [*problems, f"{where}: body is not JSON: {exc}"]
        elif media == "multipart/form-data":
            value = _form_fields(content_type or "", body)
        else:
            return problems
        return problems + self._validate(schema, value, where)

    def _check_query(self, op: Operation, query: dict[str, list[str]], where: str) -> list[str]:
        problems = []
        declared = {p["name"]: p for p in op.spec.get("parameters", []) if p.get("in") == "query"}
        deep = {name for name, p in declared.items() if p.get("style") == "deepObject"}
        for key, values in query.items():
            name = key.split("[", 1)[0]
            parameter = declared.get(name)
            if parameter is None:
                problems.append(f"{where}: unknown query parameter {key!r}")
                continue
            if name in deep:
                continue  # metadata[k]=v: each key checked as a string below
            schema = parameter.get("schema", {})
            for raw in values:
                problems += self._validate(schema, _coerce(raw, schema), f"{where} ?{key}")
        for name in deep:
            fields = {
                key[len(name) + 1 : -1]: values[-1]
                for key, values in query.items()
                if key.startswith(name + "[") and key.endswith("]")
            }
            if fields:
                problems += self._validate(declared[name]["schema"], fields, f"{where} ?{name}")
        return problems

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Problems with a response the fake sent; [] when the description allows it."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in the API description"]
        where = f"{op.id} response {status}"
        responses = op.spec.get("responses", {})
        declared = responses.get(str(status))
        if declared is None and status >= 400:
            # Errors share one shape across the API, whether or not an operation lists them.
            return self._validate(
                {"$ref": "#/components/schemas/ErrorResponse"}, body, f"{where} (error)"
            )
        if declared is None:
            return [f"{where}: status {status} is not a documented response"]
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        return self._validate(schema, body, where) if schema is not None else []


def _coerce(raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            return {"true": True, "false": False}.get(raw, raw)
    except ValueError:
        return raw
    return raw


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """A multipart/form-data body's fields (file parts as text: the schema says binary)."""
    return {
        name: data.decode("utf-8", "replace")
        for name, (_, data) in form_files(content_type, body).items()
    }


def form_files(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's parts: name -> (file name, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            parts[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return parts


@cache
def _load(path: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(Path(path).read_text())
    return document


def as_json_schema(node: Any) -> Any:
    """``node`` with OpenAPI 3.0 leftovers read as 3.0 meant them.

    Descriptions that say 3.1 still carry 3.0 keywords: ``exclusiveMinimum: true`` beside
    ``minimum: 0`` means "greater than 0" (2020-12 would read ``true`` as the number 1) and
    ``nullable: true`` beside a ``type`` admits null.
    """
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items()}
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        exclusive = out.get(flag)
        if isinstance(exclusive, bool):
            del out[flag]
            if exclusive and bound in out:
                out[flag] = out.pop(bound)
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def load_contract(
    path: Path = OPENAI_SPEC, amend: Callable[[dict[str, Any]], None] | None = None
) -> OpenAPIContract | None:
    """The contract in ``path``, or None when the file is not there.

    ``amend`` edits the document first: a test suite records there, with the reason, where
    the description contradicts itself (a schema missing a value the operation's own
    example returns).
    """
    if not path.is_file():
        return None
    document = as_json_schema(_load(str(path)))
    if amend is not None:
        amend(document)
    return OpenAPIContract(document)
