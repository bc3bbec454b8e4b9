"""The labels every job tunefleet creates carries, so a later process can find it.

A job is labelled with its run key (and, for people, the run's name and the target); the
placement policy's tags go beside them. At plan time the run key is not known yet: the
planned request carries :data:`RUN_KEY_PLACEHOLDER`, which ``submit`` fills in
(:func:`tunefleet.provider.fill_placeholders`), so the request sent is the one planned.
Tag keys in a spec may not start with ``tunefleet:``, so a user's tag never collides.
"""

from __future__ import annotations

from tunefleet.spec import RunSpec

__all__ = ["RUN", "RUN_KEY", "RUN_KEY_PLACEHOLDER", "TARGET", "run_labels"]

RUN_KEY = "tunefleet:run-key"
"""The label ``find`` looks a job up by."""
RUN = "tunefleet:run"
TARGET = "tunefleet:target"
RUN_KEY_PLACEHOLDER = "${run_key}"
"""Stands for the run key in a planned request."""


def run_labels(spec: RunSpec, *, target: str | None = None) -> dict[str, str]:
    """The placement policy's tags, then tunefleet's: the run, the target (when given) and
    the run key's placeholder. A service whose labels cannot hold ``:`` maps the keys."""
    labels = dict(spec.placement.tags)
    labels[RUN] = spec.name
    if target is not None:
        labels[TARGET] = target
    labels[RUN_KEY] = RUN_KEY_PLACEHOLDER
    return labels
