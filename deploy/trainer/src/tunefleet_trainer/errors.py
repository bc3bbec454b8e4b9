"""The trainer's one error: a configuration it cannot run."""

from __future__ import annotations

__all__ = ["TrainerError"]


class TrainerError(Exception):
    """The trainer cannot run as configured (no GPU for QLoRA, a base model not found
    offline, bad data or config). Its message says what to change on one line; the entry
    point prints it without a traceback and exits with ``exit_code``."""

    exit_code: int = 2
