"""The trainer's distribution stays slim: nothing of tunefleet's orchestration in its image."""

from __future__ import annotations

import re
from importlib.metadata import distribution, requires

from packaging.requirements import Requirement

ORCHESTRATION = {"tunefleet", "sqlalchemy", "alembic", "typer", "tiktoken", "rich"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def test_the_trainer_declares_no_orchestration_dependency() -> None:
    declared = requires("tunefleet-trainer") or []
    names = {_name(r) for r in declared}
    assert names, "the distribution declares its requirements"
    assert not names & ORCHESTRATION, f"the trainer must not pull {names & ORCHESTRATION}"
    assert {"torch", "transformers", "peft", "trl"} <= names, "the train extra is declared"


def test_what_the_image_installs_pulls_no_journal_or_tokenizer_of_tunefleets() -> None:
    """Walk the installed requirements of tunefleet-trainer[train]: SQLAlchemy, Alembic and
    tiktoken come only with tunefleet's core. (transformers 5 itself depends on typer, for
    its own CLI; that one the trainer cannot avoid and does not import.)"""
    seen: dict[str, str] = {}
    todo = [("tunefleet-trainer", "train", "")]
    while todo:
        name, extra, via = todo.pop()
        if name in seen:
            continue
        seen[name] = via
        for raw in requires(distribution(name).metadata["Name"]) or []:
            requirement = Requirement(raw)
            wanted = {"extra": extra} if extra else {"extra": ""}
            if requirement.marker is not None and not requirement.marker.evaluate(wanted):
                continue
            child = _name(raw)
            try:
                distribution(child)
            except Exception:  # an optional dependency not installed here
                continue
            todo.append((child, "", name))
    assert not {"tunefleet", "sqlalchemy", "alembic", "tiktoken"} & set(seen), {
        name: seen[name] for name in ORCHESTRATION & set(seen)
    }
    if "typer" in seen:
        assert seen["typer"] == "transformers", f"typer came in through {seen['typer']}"
