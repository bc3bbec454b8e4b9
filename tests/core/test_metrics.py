"""Each metric agrees with its reference implementation on a fixed set of cases."""

from __future__ import annotations

import itertools
import math
import re
import string
from collections import Counter

import pytest

from tunefleet.evaluation.metrics import (
    JsonSchemaChecker,
    bleu,
    bleu_signature,
    exact_match,
    json_valid,
    macro_f1,
    mean,
    normalize_answer,
    parse_json,
    rouge_l,
    rouge_tokens,
    strip_json_fence,
    token_f1,
)

# --- The reference: SQuAD v1.1's official evaluation script ------------------------------
# Copied verbatim from "Official evaluation script for v1.1 of the SQuAD dataset",
# https://worksheets.codalab.org/rest/bundles/0xbcd57bee090b421c982906709c8c27e1/contents/blob/
# (linked from https://rajpurkar.github.io/SQuAD-explorer/; mirrored at
# https://github.com/allenai/bi-att-flow/blob/master/squad/evaluate-v1.1.py).


def normalize_answer_reference(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score_reference(prediction, ground_truth):
    prediction_tokens = normalize_answer_reference(prediction).split()
    ground_truth_tokens = normalize_answer_reference(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1  # noqa: RET504


def exact_match_score_reference(prediction, ground_truth):
    return normalize_answer_reference(prediction) == normalize_answer_reference(ground_truth)


# --- End of the reference ---------------------------------------------------------------

SQUAD_CASES = [
    "",
    "   ",
    "?!.",
    "...---...",
    "The",
    "the cat",
    "The Cat!",
    "a cat, the cat and an apple",
    "cat cat cat",
    "Cat",
    "Denver Broncos",
    "the Denver   Broncos.",
    "Broncos\tDenver\n",
    "1,000",
    "1000",
    "state-of-the-art",
    "théâtre",
    "Théâtre!",
    "¿Qué hora es?",
    "qué hora es",
    "«Bonjour» — dit-il",
    "北京是中国的首都。",
    "北京是中国的首都",
    "Straße",
    "İstanbul",
    "the\u00a0answer",
    "an",
    "Anna and the antelope",
]


@pytest.mark.parametrize("text", SQUAD_CASES)
def test_normalize_answer_is_squad_v1_1s(text: str) -> None:
    assert normalize_answer(text) == normalize_answer_reference(text)


def test_exact_match_and_token_f1_are_squad_v1_1s() -> None:
    # Every ordered pair of the cases above; the script takes (prediction, ground_truth).
    differ = [
        (expected, predicted)
        for expected, predicted in itertools.product(SQUAD_CASES, repeat=2)
        if exact_match(expected, predicted)
        != float(exact_match_score_reference(predicted, expected))
        or token_f1(expected, predicted) != f1_score_reference(predicted, expected)
    ]
    assert differ == []


def test_squad_quirks_are_kept() -> None:
    # An empty expected answer: exact match 1 against an empty prediction, F1 0 (v1.1's rule).
    assert exact_match("", "") == 1.0
    assert token_f1("", "") == 0.0
    # Punctuation-only answers normalise to nothing, as in the script.
    assert exact_match("?!", "...") == 1.0
    # Punctuation outside ASCII is kept, as in the script.
    assert normalize_answer("¿Qué?") == "¿qué"
    assert token_f1("the Denver Broncos", "Denver Broncos won") == pytest.approx(0.8)


def test_mean_is_exact() -> None:
    assert sum([0.1] * 10) / 10 != 0.1  # the naive mean is 0.09999999999999999
    assert mean([0.1] * 10) == 0.1
    with pytest.raises(ValueError, match="no values"):
        mean([])


# --- ROUGE-L: rouge-score with a Unicode tokenizer -----------------------------------------

ASCII_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "the fast brown fox jumped over a lazy dog",
    "Refunds take 5-7 business days; contact billing@example.com.",
    "refunds take five to seven business days",
    "snake_case and CamelCase, don't split-words",
    "",
    "   !!! ",
    "42",
]


@pytest.mark.parametrize("text", ASCII_TEXTS)
def test_rouge_tokens_equal_the_default_tokenizer_on_ascii(text: str) -> None:
    from rouge_score.tokenize import tokenize

    assert rouge_tokens(text) == tokenize(text, None)


def test_rouge_l_equals_rouge_score_default_on_ascii() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    reference = RougeScorer(["rougeL"], use_stemmer=False)
    pairs = list(itertools.product(ASCII_TEXTS, repeat=2))
    expected = [a for a, _ in pairs]
    predicted = [b for _, b in pairs]
    want = [reference.score(a, b)["rougeL"].fmeasure for a, b in pairs]
    assert rouge_l(expected, predicted) == want


def test_rouge_l_hand_worked() -> None:
    # LCS of "the cat sat on the mat" and "the cat lay on the mat" is 5 words: F = 5/6.
    assert rouge_l(["the cat sat on the mat"], ["the cat lay on the mat"]) == [pytest.approx(5 / 6)]
    # No stemmer: "runs" does not match "running", in English as in every language.
    assert rouge_l(["he runs"], ["he running"]) == [pytest.approx(0.5)]
    assert rouge_l([""], ["anything"]) == [0.0]


def test_rouge_l_scores_other_languages() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    default = RougeScorer(["rougeL"], use_stemmer=False)
    # rouge-score's default tokenizer drops ö, ü and ß: "Größe" (size) and "Grüße"
    # (greetings) both become "gr e" and match. Ours tells them apart.
    assert default.score("Größe", "Grüße")["rougeL"].fmeasure == 1.0
    assert rouge_l(["Größe"], ["Grüße"]) == [0.0]
    # German: 3 of 4 expected words in order, all 3 predicted ones right: F = 6/7.
    assert rouge_l(["Die Größe passt nicht"], ["die Größe passt"]) == [pytest.approx(6 / 7)]
    # Russian has no ASCII letters at all: the default scores a perfect answer 0.
    assert default.score("Привет, мир", "Привет, мир")["rougeL"].fmeasure == 0.0
    assert rouge_l(["Привет, мир"], ["привет мир"]) == [1.0]
    # Chinese is written without spaces: each character is a word (3 of 4 shared: 0.75).
    assert rouge_l(["我喜欢猫"], ["我喜欢狗"]) == [pytest.approx(0.75)]
    # NFKC: full-width letters and ligatures are the plain ones.
    assert rouge_l(["\uff26\uff35\uff2c\uff2c \ufb01le"], ["full file"]) == [1.0]


def test_rouge_tokens_keep_combining_marks_in_words() -> None:
    # Devanagari vowel signs and the virama are combining marks, not word breaks.
    assert rouge_tokens("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert rouge_tokens("Größe, STRASSE") == ["grösse", "strasse"]


def test_rouge_l_needs_as_many_answers() -> None:
    with pytest.raises(ValueError, match="2 expected answers but 1"):
        rouge_l(["a", "b"], ["a"])


# --- BLEU: sacreBLEU ----------------------------------------------------------------------


def test_bleu_hand_worked() -> None:
    # 1- to 4-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths: BLEU = 100 * (1/12) ** 0.25.
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        100 * (1 / 12) ** 0.25
    )
    # All n-grams right but 4 words of 6: brevity penalty exp(1 - 6/4).
    assert bleu(["the cat sat on the mat"], ["the cat sat on"]) == pytest.approx(
        100 * math.exp(-0.5)
    )
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    assert bleu(["the cat sat on the mat", "hello"], ["", ""]) == 0.0


# sacreBLEU's README example (https://github.com/mjpost/sacrebleu#using-sacrebleu-from-python),
# with its first reference stream only (one reference per answer, as tunefleet scores).
README_SYSTEM = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFERENCES = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]


def test_bleu_of_sacrebleus_readme_example() -> None:
    # 13a tokens: n-gram matches 12/17, 6/14, 4/11, 3/8; 17 words each side, so BP = 1.
    want = 100 * math.exp(sum(math.log(p) for p in (12 / 17, 6 / 14, 4 / 11, 3 / 8)) / 4)
    assert bleu(README_REFERENCES, README_SYSTEM) == pytest.approx(want)
    assert round(bleu(README_REFERENCES, README_SYSTEM), 2) == 45.07


@pytest.mark.parametrize(
    ("references", "system"),
    [
        (README_REFERENCES, README_SYSTEM),
        (
            ["Refunds take five business days.", "Reset it from the Settings page, then sign in."],
            [
                "Refunds take about five business days.",
                "Reset it from Settings, then sign in again.",
            ],
        ),
    ],
)
def test_bleu_is_corpus_bleu_as_nltk_computes_it(references: list[str], system: list[str]) -> None:
    # A second route: NLTK's corpus BLEU over sacreBLEU's 13a tokens (no smoothing is needed:
    # every n-gram order has a match here).
    from nltk.translate.bleu_score import corpus_bleu
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenize = Tokenizer13a()
    want = 100 * corpus_bleu(
        [[tokenize(r).split()] for r in references], [tokenize(s).split() for s in system]
    )
    assert bleu(references, system) == pytest.approx(want)
    # Corpus level: not the mean of the sentences' BLEU.
    sentences = [bleu([r], [s]) for r, s in zip(references, system, strict=True)]
    assert bleu(references, system) != pytest.approx(sum(sentences) / len(sentences))


def test_bleu_signature_records_its_settings() -> None:
    signature = bleu_signature()
    assert "nrefs:1" in signature and "tok:13a" in signature and "smooth:exp" in signature


def test_bleu_needs_answers() -> None:
    with pytest.raises(ValueError, match="no answers"):
        bleu([], [])


# --- macro-F1: scikit-learn ---------------------------------------------------------------


def test_macro_f1_hand_worked() -> None:
    # pos: P 1, R 1/2, F 2/3; neg: P 1/2, R 1, F 2/3; neu: never predicted, F 0.
    # "other" names no expected class: a miss for neu, and no class of its own.
    expected = ["pos", "pos", "neg", "neu"]
    predicted = ["POS ", "neg", "neg", "other"]
    assert macro_f1(expected, predicted) == pytest.approx(4 / 9)


def test_macro_f1_classes_come_from_the_expected_answers() -> None:
    # a: F 1; b: P 1, R 1/2, F 2/3. Were "c" a class, the mean would be 5/9, not 5/6.
    assert macro_f1(["a", "a", "b", "b"], ["a", "a", "b", "c"]) == pytest.approx(5 / 6)


def test_macro_f1_normalises_labels() -> None:
    assert macro_f1(["Billing", "refund\n"], ["  billing ", "REFUND"]) == 1.0
    assert macro_f1(["billing"], ["refund"]) == 0.0


# --- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "valid"),
    [
        ('{"a": 1}', True),
        ("  [1, 2]\n", True),
        ('"a JSON string"', True),
        ("null", True),
        ('```json\n{"a": 1}\n```', True),
        ("```JSON\n{}\n```\n", True),
        ("```\n[1]\n```", True),
        ('\n```json\n{\n  "a": [1, 2]\n}\n```  ', True),
        ('Here it is: {"a": 1}', False),
        ('```json\n{"a": 1}\n```\nHope this helps!', False),
        ("```json\n{}\n```\n```json\n{}\n```", False),
        ("```python\n{}\n```", False),
        ('{"a": 1', False),
        ("{'a': 1}", False),
        ('{"a": 1,}', False),
        ("NaN", False),
        ('{"a": Infinity}', False),
        ("", False),
        ("[" * 100_000, False),
        ("[" * 100_000 + "]" * 100_000, False),
    ],
)
def test_json_valid(answer: str, valid: bool) -> None:
    assert json_valid(answer) == (1.0 if valid else 0.0)


def test_strip_json_fence_and_parse() -> None:
    assert strip_json_fence('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_json_fence("no fence") == "no fence"
    assert parse_json('```json\n{"a": [1]}\n```') == (True, {"a": [1]})
    assert parse_json("nope") == (False, None)


ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "items": {"$ref": "#/$defs/items"}},
    "required": ["order_id"],
    "additionalProperties": False,
    "$defs": {"items": {"type": "array", "items": {"type": "integer"}}},
}


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"order_id": "A-1", "items": [1, 2]}', 1.0),
        ('```json\n{"order_id": "A-1"}\n```', 1.0),
        ('{"order_id": 1}', 0.0),
        ('{"order_id": "A-1", "items": ["x"]}', 0.0),
        ('{"order_id": "A-1", "extra": true}', 0.0),
        ("{}", 0.0),
        ("not json", 0.0),
    ],
)
def test_json_schema(answer: str, score: float) -> None:
    assert JsonSchemaChecker(ORDER_SCHEMA)(answer) == score


def test_json_schema_uses_the_draft_its_schema_names() -> None:
    # prefixItems exists from Draft 2020-12 on (the default); Draft 7 ignores the keyword.
    schema = {"type": "array", "prefixItems": [{"type": "integer"}]}
    assert JsonSchemaChecker(schema)('["x"]') == 0.0
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **schema}
    assert JsonSchemaChecker(draft7)('["x"]') == 1.0


def test_json_schema_format_is_an_annotation() -> None:
    assert JsonSchemaChecker({"type": "string", "format": "email"})('"not an email"') == 1.0


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "nope"}, r"not a valid JSON Schema \(draft 2020-12\) at type"),
        ({"properties": {"a": {"minLength": -1}}}, "at properties/a/minLength"),
        (
            {"$schema": "http://json-schema.org/draft-07/schema#", "required": "a"},
            r"\(draft 7\) at required",
        ),
        ({"$schema": "https://example.com/my-draft"}, "not a JSON Schema draft jsonschema knows"),
    ],
)
def test_an_invalid_schema_is_refused_up_front(schema: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JsonSchemaChecker(schema)


def test_a_remote_reference_is_not_fetched() -> None:
    checker = JsonSchemaChecker({"$ref": "https://example.com/schema.json"})
    with pytest.raises(ValueError, match="cannot be resolved"):
        checker("{}")


def test_a_remote_ref_is_never_fetched() -> None:
    """A schema pointing at a URL is refused when scored, without a request being sent."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # pragma: no cover - must not be reached
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        checker = JsonSchemaChecker({"$ref": url})
        with pytest.raises(ValueError, match="remote schemas are not fetched"):
            checker('{"a": 1}')
    finally:
        server.shutdown()
    assert asked == []
