"""The metrics that compare a model's answers with the golden set's expected answers.

Pure functions of text: no I/O, no provider, and no heavy import at module load (rouge-score,
sacreBLEU, scikit-learn and the ``regex`` engine are imported by the function that needs
them, so ``tunefleet --help`` does not pay for them). Every function takes the expected
answers first and the model's answers second, as scikit-learn's ``(y_true, y_pred)``.

========== ============================================================== ===========
metric     definition                                                     reference
========== ============================================================== ===========
exact      1 when the SQuAD-normalised answers are equal, else 0           SQuAD v1.1
token_f1   F1 of the SQuAD-normalised answers' word bags                   SQuAD v1.1
rouge_l    ROUGE-L F-measure, no stemmer, Unicode word tokens              rouge-score
bleu       corpus BLEU, 0-100, 13a tokenizer, one reference per answer     sacreBLEU
macro_f1   macro-F1 over the expected answers' classes                     scikit-learn
json_valid 1 when the answer (inside one optional fence) is JSON           RFC 8259
json_schema 1 when it is JSON and validates against the schema             jsonschema
========== ============================================================== ===========

Choices, each made so a score means the same thing in every language a team evaluates:

- **SQuAD normalisation** follows the official v1.1 evaluation script exactly (lowercase,
  drop ASCII punctuation, drop the words a/an/the, collapse whitespace), including its
  quirks: punctuation outside ASCII (``¿``, ``«``, ``—``) is kept, and token F1 is 0 when
  either side normalises to nothing (so an empty expected answer scores F1 0 even against
  an empty prediction, while its exact match is 1).
- **ROUGE-L** uses Google's ``rouge-score`` with a tokenizer of our own, because its
  default tokenizer keeps only ``[a-z0-9]`` and so drops every other letter: "Größe" and
  "Grüße" both become ``gr e`` and match, Russian or Chinese answers have no tokens and
  score 0. Ours applies NFKC and case folding, then takes runs of letters, digits and
  combining marks as words, and each Han, Hiragana or Katakana character as a word of its
  own (those scripts are written without spaces). On ASCII text it gives exactly the
  default tokenizer's tokens. Scripts written without spaces other than these (Thai, Lao,
  Khmer, Myanmar) are tokenised into whole runs, which makes ROUGE-L coarse there. No
  stemmer: rouge-score's is NLTK's English Porter stemmer, which would merge English word
  forms only and mangle other languages, so scores of language slices could not be compared;
  without it every language is scored alike (this is also Hugging Face ``evaluate``'s
  default).
- **BLEU** is sacreBLEU's corpus BLEU with its defaults (13a tokenizer, exponential
  smoothing, mixed case), so a score is comparable with published sacreBLEU scores; its
  signature (:func:`bleu_signature`) says exactly how it was computed. 13a splits on spaces
  and punctuation, so for Chinese, Japanese or Thai answers BLEU says little: use rouge_l
  or token-level metrics for those slices.
- **JSON** is strict RFC 8259 (``NaN`` and ``Infinity`` are not JSON). One surrounding
  Markdown fence, `````json`` or a bare `````, is stripped first, because chat models wrap
  JSON in one even when told not to; anything else around the JSON makes it invalid.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

__all__ = [
    "JsonSchemaChecker",
    "bleu",
    "bleu_signature",
    "class_label",
    "exact_match",
    "json_valid",
    "macro_f1",
    "mean",
    "normalize_answer",
    "parse_json",
    "rouge_l",
    "rouge_tokens",
    "strip_json_fence",
    "token_f1",
]

# --- SQuAD v1.1: exact match and token F1 ---------------------------------------------

# The official script removes `string.punctuation` (ASCII only) and matches articles with
# `\b(a|an|the)\b` on str, so `\b` is Unicode-aware; both are kept exactly.
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """``text`` as SQuAD v1.1's ``normalize_answer`` leaves it: lowercased, without ASCII
    punctuation and the articles a/an/the, with runs of whitespace made one space."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(expected: str, predicted: str) -> float:
    """1.0 when the two answers are equal after :func:`normalize_answer`, else 0.0."""
    return 1.0 if normalize_answer(expected) == normalize_answer(predicted) else 0.0


def token_f1(expected: str, predicted: str) -> float:
    """F1 of the normalised answers' word multisets (SQuAD v1.1 ``f1_score``): 0.0 when
    they share no word, which includes either side being empty."""
    predicted_tokens = normalize_answer(predicted).split()
    expected_tokens = normalize_answer(expected).split()
    same = sum((Counter(predicted_tokens) & Counter(expected_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted_tokens)
    recall = same / len(expected_tokens)
    return 2 * precision * recall / (precision + recall)


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean of ``values``, summed exactly (``math.fsum``) so that a score
    of, say, 0.8 is not 0.7999999999 when compared with a threshold; ValueError if empty."""
    items = list(values)
    if not items:
        raise ValueError("the mean of no values is undefined")
    return math.fsum(items) / len(items)


# --- ROUGE-L ----------------------------------------------------------------------------

# Scripts written without spaces between words: each character is a word.
_CHARACTER_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}"


@cache
def _word_pattern() -> Any:
    import regex  # type: ignore[import-untyped]  # Unicode properties (\p{...}); no stubs

    return regex.compile(
        rf"[{_CHARACTER_SCRIPTS}]|(?:(?![{_CHARACTER_SCRIPTS}])[\p{{L}}\p{{N}}\p{{M}}])+"
    )


def rouge_tokens(text: str) -> list[str]:
    """The words ROUGE-L compares: ``text`` in NFKC, case-folded, split into runs of
    letters, digits and combining marks, with each Han, Hiragana and Katakana character a
    word of its own. On ASCII text these are rouge-score's default tokens."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    tokens: list[str] = _word_pattern().findall(folded)
    return tokens


class _UnicodeTokenizer:
    """rouge-score's tokenizer interface (an object with ``tokenize``) over :func:`rouge_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


def rouge_l(expected: Sequence[str], predicted: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure of each predicted answer against its expected one, in order
    (rouge-score's ``RougeScorer(["rougeL"])`` with :func:`rouge_tokens`, no stemmer);
    0.0 where either side has no word. ValueError if the lengths differ."""
    _same_length(expected, predicted)
    from rouge_score.rouge_scorer import RougeScorer  # type: ignore[import-untyped]

    scorer = RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_UnicodeTokenizer())
    return [
        float(scorer.score(target, prediction)["rougeL"].fmeasure)
        for target, prediction in zip(expected, predicted, strict=True)
    ]


# --- BLEU -----------------------------------------------------------------------------


def bleu(expected: Sequence[str], predicted: Sequence[str]) -> float:
    """sacreBLEU corpus BLEU (0 to 100) of the predicted answers, each against its one
    expected answer, with sacreBLEU's defaults (13a tokenizer, exponential smoothing).
    ValueError if the lengths differ or there is no answer."""
    _same_length(expected, predicted)
    if not expected:
        raise ValueError("BLEU of no answers is undefined")
    from sacrebleu.metrics.bleu import BLEU

    return float(BLEU().corpus_score(list(predicted), [list(expected)]).score)


@cache
def bleu_signature() -> str:
    """sacreBLEU's signature of :func:`bleu`'s settings (``nrefs:1|case:mixed|eff:no|tok:13a|
    smooth:exp|version:...``), to record beside a score so it can be reproduced."""
    from sacrebleu.metrics.bleu import BLEU

    # The signature's reference count is read off the last corpus scored.
    metric = BLEU()
    metric.corpus_score([""], [[""]])
    return str(metric.get_signature())


# --- macro-F1 ---------------------------------------------------------------------------


def class_label(text: str) -> str:
    """The class an answer names, for macro-F1: the text stripped and case-folded."""
    return text.strip().casefold()


def macro_f1(expected: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro-F1 over the classes of the expected answers (:func:`class_label` of each).

    A predicted answer is labelled the same way; one naming no expected class counts as a
    miss of its example's class and adds no class of its own. Each class's F1 counts
    equally; a class never predicted has F1 0 (scikit-learn's ``f1_score`` with
    ``average="macro"``, ``labels`` the expected classes, ``zero_division=0``). ValueError
    if the lengths differ or there is no answer.
    """
    _same_length(expected, predicted)
    if not expected:
        raise ValueError("macro-F1 of no answers is undefined")
    from sklearn.metrics import f1_score  # type: ignore[import-untyped]

    truth = [class_label(text) for text in expected]
    guess = [class_label(text) for text in predicted]
    labels = sorted(set(truth))
    return float(f1_score(truth, guess, labels=labels, average="macro", zero_division=0))


# --- JSON -----------------------------------------------------------------------------

_FENCE = re.compile(r"\A\s*```[ \t]*(?:json)?[ \t]*\r?\n(.*?)\r?\n[ \t]*```\s*\Z", re.S | re.I)


def strip_json_fence(text: str) -> str:
    """The inside of ``text`` when all of it is one Markdown code fence (opened by
    `````json`` or a bare `````, closed by ````` on its own line); otherwise ``text``."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text``, after :func:`strip_json_fence`, is one JSON value
    (RFC 8259: ``NaN`` and ``Infinity`` are refused), else ``(False, None)``. Nesting too
    deep for Python's parser counts as not JSON."""
    try:
        return True, json.loads(strip_json_fence(text), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False, None


def json_valid(predicted: str) -> float:
    """1.0 when the answer parses as JSON (:func:`parse_json`), else 0.0."""
    return 1.0 if parse_json(predicted)[0] else 0.0


class JsonSchemaChecker:
    """Scores answers against one JSON Schema; the schema is checked once, up front.

    The validator class is the one the schema's ``$schema`` names (Draft 2020-12 when it
    names none), as ``jsonschema.validators.validator_for`` picks it. ``format`` is an
    annotation only, as JSON Schema specifies by default. References are resolved within
    the schema; nothing is fetched.

    Raises ValueError at construction when the schema is not a valid schema of its draft
    or names a ``$schema`` jsonschema does not know; calling it raises ValueError when the
    schema holds a ``$ref`` that cannot be resolved.
    """

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        import jsonschema
        from jsonschema.validators import validator_for

        unknown = object()
        if isinstance(schema, Mapping):
            schema = dict(schema)
        cls = validator_for(schema, default=unknown)
        if cls is unknown:
            if isinstance(schema, dict) and "$schema" in schema:
                raise ValueError(
                    f"json_schema: $schema {schema['$schema']!r} is not a JSON Schema "
                    "draft jsonschema knows (use https://json-schema.org/draft/2020-12/schema)"
                )
            cls = jsonschema.Draft202012Validator
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(part) for part in exc.path) or "(root)"
            raise ValueError(
                f"json_schema: not a valid JSON Schema ({_draft(cls)}) at {where}: {exc.message}"
            ) from None
        # An empty registry: jsonschema's default one fetches a remote $ref over HTTP, which
        # would make scores depend on the network (and reach whatever host a schema names).
        from referencing import Registry

        self._validator = cls(schema, registry=Registry())

    def __call__(self, predicted: str) -> float:
        """1.0 when the answer is JSON (:func:`parse_json`) that validates against the
        schema, else 0.0."""
        from referencing.exceptions import Unresolvable

        ok, value = parse_json(predicted)
        if not ok:
            return 0.0
        try:
            valid = self._validator.is_valid(value)
        except Unresolvable as exc:
            raise ValueError(
                f"json_schema: a $ref cannot be resolved ({exc}); remote schemas are not fetched"
            ) from None
        except RecursionError:
            return 0.0
        return 1.0 if valid else 0.0


def _draft(cls: type[Any]) -> str:
    # Draft202012Validator -> "draft 2020-12", Draft7Validator -> "draft 7"
    name: str = cls.__name__.removeprefix("Draft").removesuffix("Validator")
    return f"draft {name[:4]}-{name[4:]}" if len(name) == 6 else f"draft {name}"


def _same_length(expected: Sequence[str], predicted: Sequence[str]) -> None:
    if len(expected) != len(predicted):
        raise ValueError(f"{len(expected)} expected answers but {len(predicted)} predicted ones")
