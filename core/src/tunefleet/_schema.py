"""JSON Schemas whose fields carry their attribute docstrings as descriptions.

tunefleet documents each model field with a docstring under it. pydantic's
``use_attribute_docstrings`` reads those at class creation, re-reading and tokenizing the
source for every model of every imported module: about a tenth of a second of each CLI
call, paid by every ``plan`` although only the published schema (``tunefleet schema``, the
starter project's schema file, docs/spec-reference.md) shows them. So the models leave it
off and the schema generator here adds the same descriptions when a schema is made, with
pydantic's rule: an explicit ``Field(description=...)`` wins.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema (validation mode, by alias), every field described."""
    return model.model_json_schema(schema_generator=DocumentedSchema)


class DocumentedSchema(GenerateJsonSchema):
    """pydantic's generator, plus each field's attribute docstring as its description."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        properties = json_schema.get("properties")
        cls = schema["cls"]
        if not isinstance(properties, dict) or not issubclass(cls, BaseModel):
            return json_schema
        docstrings = attribute_docstrings(cls)
        for name, field in cls.model_fields.items():
            key = field.alias if self.by_alias and field.alias else name
            doc = docstrings.get(name)
            if doc and key in properties and "description" not in properties[key]:
                properties[key]["description"] = doc
        return json_schema


def attribute_docstrings(cls: type[BaseModel]) -> dict[str, str]:
    """The docstring under each annotated attribute of ``cls`` and of the models it extends
    (the nearest class's wins), as ``inspect.cleandoc`` leaves it; ``{}`` without source."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, BaseModel) and klass is not BaseModel:
            found.update(_own_docstrings(klass))
    return found


def _own_docstrings(cls: type) -> dict[str, str]:
    node = _class_node(cls)
    if node is None:
        return {}
    docs: dict[str, str] = {}
    for before, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(before, ast.AnnAssign)
            and isinstance(before.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[before.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _class_node(cls: type) -> ast.ClassDef | None:
    """The class statement of ``cls``, found by its qualified name in its module's syntax
    tree (so two classes of one name in one file are told apart); None for classes made in
    a function or without source."""
    if "<locals>" in cls.__qualname__:
        return None
    tree = _module_tree(cls.__module__)
    if tree is None:
        return None
    body: list[ast.stmt] = tree.body
    node: ast.ClassDef | None = None
    for part in cls.__qualname__.split("."):
        node = next((s for s in body if isinstance(s, ast.ClassDef) and s.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


@functools.cache
def _module_tree(module_name: str) -> ast.Module | None:
    module = sys.modules.get(module_name)
    try:
        return ast.parse(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError, SyntaxError):
        return None
