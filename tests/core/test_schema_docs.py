"""Attribute docstrings become field descriptions when a schema is generated."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tunefleet._schema import attribute_docstrings, json_schema


class Base(BaseModel):
    size: int = 1
    """How big.

    Indented continuation lines are dedented, as pydantic does."""
    colour: str = "red"
    """The base's colour."""


class Child(Base):
    colour: str = "blue"
    """The child's colour."""
    weight: float = Field(default=1.0, description="Given explicitly.")
    """Not used: the explicit description wins."""
    label: str = Field(default="", alias="Label")
    """Shown under its alias."""
    plain: int = 0


class Outer(BaseModel):
    class Child(BaseModel):
        """Same name as the module's Child, told apart by its qualified name."""

        depth: int = 0
        """Nested depth."""

    inner: Outer.Child = Field(default_factory=lambda: Outer.Child())
    """The nested model."""


def test_inherited_and_overridden_fields_take_the_nearest_docstring() -> None:
    docs = attribute_docstrings(Child)
    assert docs["size"] == "How big.\n\nIndented continuation lines are dedented, as pydantic does."
    assert docs["colour"] == "The child's colour."
    assert "plain" not in docs


def test_a_schema_describes_fields_by_alias_and_keeps_explicit_descriptions() -> None:
    props = json_schema(Child)["properties"]
    assert props["colour"]["description"] == "The child's colour."
    assert props["weight"]["description"] == "Given explicitly."
    assert props["Label"]["description"] == "Shown under its alias."
    assert "description" not in props["plain"]


def test_nested_classes_of_one_name_are_told_apart() -> None:
    schema = json_schema(Outer)
    assert schema["properties"]["inner"]["description"] == "The nested model."
    assert schema["$defs"]["Child"]["properties"]["depth"]["description"] == "Nested depth."


def test_a_model_made_in_a_function_has_no_docstrings_to_read() -> None:
    def make() -> type[BaseModel]:
        class Local(BaseModel):
            x: int = 0
            """Invisible: no module-level class statement to find."""

        return Local

    assert attribute_docstrings(make()) == {}
