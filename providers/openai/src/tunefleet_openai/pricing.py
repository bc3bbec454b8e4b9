"""What fine-tuning on the OpenAI API costs, and how many epochs it chooses by itself.

OpenAI bills supervised and DPO fine-tuning per token trained: the file's billable tokens
times the epochs. The table is OpenAI's published price list as of :data:`PRICE_DATE`;
a target overrides it with ``options.training_price_per_million_tokens`` when the list
has moved on or the account has a negotiated price.
"""

from __future__ import annotations

from datetime import date

__all__ = ["PRICE_DATE", "TRAINING_PRICES", "default_epochs", "model_family", "training_price"]

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

# Longest names first, so `gpt-4o-mini-2024-07-18` is not taken for `gpt-4o`.
_FAMILIES = sorted(TRAINING_PRICES, key=len, reverse=True)


def model_family(model: str) -> str | None:
    """The price-table family of ``model``, a snapshot id or a fine-tuned model id.

    ``gpt-4o-mini-2024-07-18`` and ``ft:gpt-4o-mini-2024-07-18:acme::abc123`` (a fine-tuned
    model trained further) are both ``gpt-4o-mini``; an unknown model gives None.
    """
    name = model.split(":")[1] if model.startswith("ft:") else model
    for family in _FAMILIES:
        if name == family or name.startswith(family + "-"):
            return family
    return None


def training_price(model: str, override: float | None = None) -> float | None:
    """USD per million training tokens for ``model``: ``override``, else the table's."""
    if override is not None:
        return override
    family = model_family(model)
    return TRAINING_PRICES[family] if family is not None else None


def default_epochs(examples: int) -> int:
    """The epochs OpenAI chooses when a job sets none (``n_epochs: auto``).

    Its documented rule: 3 epochs, raised so that small files are seen at least 100 times
    in all (at most 25 epochs) and lowered so that large files are not trained on more
    than 25,000 examples in all (at least 1 epoch).
    """
    target, least, most = 3, 100, 25_000
    if examples * target < least:
        return min(25, least // max(examples, 1))
    if examples * target > most:
        return max(1, most // examples)
    return target
