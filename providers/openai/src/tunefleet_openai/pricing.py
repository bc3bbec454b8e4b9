"""What fine-tuning on the OpenAI API costs, the epochs it picks, the tokens it trains, and
the tokens its models may generate in an answer.

OpenAI bills supervised and DPO fine-tuning per token trained: the file's billable tokens
(each example up to the model's training context, :data:`TRAINING_CONTEXT`) times the
epochs. The price table is OpenAI's published price list as of :data:`PRICE_DATE`; a target
overrides it with ``options.training_price_per_million_tokens`` when the list has moved on
or the account has a negotiated price. When a job sets no epochs, the service applies the
rule :func:`tunefleet.kit.cost.scaled_epochs` implements.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from tunefleet.kit.cost import TokenPrices, scaled_epochs

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "PRICES",
    "PRICE_DATE",
    "TRAINING_CONTEXT",
    "TRAINING_PRICES",
    "max_output_tokens",
    "model_family",
    "training_context",
]

PRICE_DATE = date(2025, 6, 1)
"""When :data:`TRAINING_PRICES` was taken from https://openai.com/api/pricing/."""

TRAINING_PRICES: dict[str, float] = {
    "gpt-4.1": 25.00,
    "gpt-4.1-mini": 5.00,
    "gpt-4.1-nano": 1.50,
    "gpt-4o": 25.00,
    "gpt-4o-mini": 3.00,
    "gpt-3.5-turbo": 8.00,
    "davinci-002": 6.00,
    "babbage-002": 0.40,
}
"""USD per million training tokens, by model family."""

TRAINING_CONTEXT: dict[str, int] = {
    "gpt-4.1": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1-nano": 65_536,
    "gpt-4o": 65_536,
    "gpt-4o-mini": 65_536,
    "gpt-3.5-turbo": 16_385,
    "gpt-3.5-turbo-0613": 4_096,
}
"""Tokens per training example, by model family, from OpenAI's fine-tuning guide (taken
2026-11). Longer examples are truncated, not rejected, so only this many are billed.
``gpt-3.5-turbo-0613`` is a snapshot with a shorter context than its family."""

MODEL_PAGES = "https://platform.openai.com/docs/models"
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4_096,
    "gpt-4o-mini": 16_384,
    "gpt-3.5-turbo": 4_096,
}
"""Tokens a chat completion may generate (``max_completion_tokens`` at most), by model
family, from OpenAI's model pages (``<MODEL_PAGES>/<family>``, "Max output tokens").
A fine-tuned model generates as many as its base. ``gpt-4o-2024-05-13`` is a snapshot
that generates fewer than its family. Asking for more is refused with a 400."""


def _match(model: str, families: Iterable[str]) -> str | None:
    """The entry of ``families`` that ``model`` (a snapshot id or a fine-tuned model id)
    belongs to: ``gpt-4o-mini-2024-07-18`` and ``ft:gpt-4o-mini-2024-07-18:acme::abc123``
    (a fine-tuned model trained further) are both ``gpt-4o-mini``; None when unknown."""
    name = model.split(":")[1] if model.startswith("ft:") else model
    # Longest names first, so `gpt-4o-mini-2024-07-18` is not taken for `gpt-4o`.
    for family in sorted(families, key=len, reverse=True):
        if name == family or name.startswith(family + "-"):
            return family
    return None


def model_family(model: str) -> str | None:
    """The price-table family of ``model``; None for a model the table does not know."""
    return _match(model, TRAINING_PRICES)


def training_context(model: str) -> tuple[int, str] | None:
    """Tokens per training example of ``model`` and where the figure comes from; None for a
    model the table does not know."""
    family = _match(model, TRAINING_CONTEXT)
    if family is None:
        return None
    return TRAINING_CONTEXT[family], f"{family} training context"


def max_output_tokens(model: str) -> tuple[int, str] | None:
    """Tokens a chat completion of ``model`` (a snapshot or ``ft:`` id matches its family)
    may generate, and the page that says so; None for a model the table does not know."""
    family = _match(model, MAX_OUTPUT_TOKENS)
    if family is None:
        return None
    page = family.removesuffix("-2024-05-13")
    return MAX_OUTPUT_TOKENS[family], f"{MODEL_PAGES}/{page} (max output tokens)"


PRICES = TokenPrices(
    price_date=PRICE_DATE,
    per_million=TRAINING_PRICES,
    family=model_family,
    default_epochs=scaled_epochs,  # OpenAI's documented `n_epochs: auto` rule
)
"""The price list with OpenAI's default-epochs rule, for estimates and actual costs."""
