"""The model card: what a reader of `tunefleet models card` relies on.

Runs are made with the fake providers through the engine, as tests/core/run/test_evaluation.py
does: ``fake_hosted``'s fine-tuned model knows its training data (other questions get
:data:`~tunefleet.testing.fake.UNSURE`), its base model knows nothing, and ``fake-judge``
prefers an answer that is not UNSURE. The card is rendered to HTML with markdown-it-py
(CommonMark with GitHub's tables, raw HTML allowed so that an unescaped tag would show)
and read back, so the tests check what a reader sees, not the Markdown's spelling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from tests.core.run.test_engine import FAST

from tunefleet.cli import main
from tunefleet.plugins import Registry
from tunefleet.registry import resolve
from tunefleet.run import Engine
from tunefleet.run.model_card import MAX_CASE_CHARS, model_card
from tunefleet.state import Journal, open_journal
from tunefleet.testing.fake import UNSURE

QUESTIONS = [
    ("Reset my password", "Use the link on the sign-in page."),
    ("Where is my parcel?", "Track it under Orders, then Track parcel."),
    ("Can I return a gift?", "Yes, within 30 days, with the gift receipt."),
    ("How do I change my address?", "Edit it under Account, then Addresses."),
]
JUDGED = {
    "metrics": ["exact_match", "token_f1", "llm_judge"],
    "thresholds": {"llm_judge": 0.6},
    "slice_by": ["language"],
    "slice_thresholds": {"language": {"de": {"exact_match": 0.9}}},
    "judge": {"provider": "fake_hosted", "model": "fake-judge"},
}


def chat(question: str, answer: str, **fields: Any) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages, **fields}) + "\n"


class Setup:
    """A journal, the fake providers, and a spec whose data the test writes."""

    def __init__(self, tmp_path: Path, journal: Journal, registry: Registry) -> None:
        self.tmp_path = tmp_path
        self.journal = journal
        self.registry = registry
        self.root = tmp_path / "provider"

    def write(self, train: list[tuple[str, str]], golden: list[tuple[str, str, str]]) -> None:
        """Training pairs, and golden (question, answer, language) triples."""
        (self.tmp_path / "train.jsonl").write_text("".join(chat(q, a) for q, a in train))
        (self.tmp_path / "golden.jsonl").write_text(
            "".join(chat(q, a, language=lang) for q, a, lang in golden)
        )

    def spec(
        self,
        provider: str,
        evaluation: dict[str, Any] | None,
        description: str | None = None,
    ) -> Path:
        body: dict[str, Any] = {
            "name": "support",
            "base_model": "gpt-4o-mini-2024-07-18",
            "dataset": "train.jsonl",
            "hyperparameters": {"epochs": 1, "learning_rate_multiplier": 2.0},
            "targets": [{"provider": provider, "options": {"root": str(self.root)}}],
        }
        if description is not None:
            body["description"] = description
        if evaluation is not None:
            body["evaluation"] = {"golden_set": "golden.jsonl", **evaluation}
        path = self.tmp_path / "spec.yaml"
        path.write_text(json.dumps(body))
        return path

    def apply(self, spec: Path) -> str:
        engine = Engine(self.journal, registry=self.registry, settings=FAST)
        started = engine.start(spec)
        assert engine.drive(started.run.id).join(60), "the run did not end"
        return started.run.id


@pytest.fixture
def setup(tmp_path: Path, registry: Registry) -> Iterator[Setup]:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield Setup(tmp_path, journal, registry)
    journal.close()


class Page(HTMLParser):
    """What a reader sees of an HTML page: the elements used, each table as rows of cell
    texts, the text of each ``<pre>`` (verbatim) and of each paragraph and list item."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self.pres: list[str] = []
        self.paragraphs: list[str] = []
        self.items: list[str] = []
        self.headings: list[str] = []
        self._text: list[str] | None = None
        self._cells: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._cells = []
            self.tables[-1].append(self._cells)
        elif tag in ("td", "th", "pre", "p", "li", "h1", "h2", "h3", "h4"):
            self._text = []
        elif tag in ("br", "div") and self._text is not None:
            self._text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        text = "".join(self._text)
        if tag in ("td", "th") and self._cells is not None:
            self._cells.append(" ".join(text.split()))
        elif tag == "pre":
            self.pres.append(text.removesuffix("\n"))
        elif tag == "p":
            self.paragraphs.append(text)
        elif tag == "li":
            self.items.append(" ".join(text.split()))
        elif tag in ("h1", "h2", "h3", "h4"):
            self.headings.append(text)
        else:
            return
        self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def table(self, first_header: str) -> list[list[str]]:
        """The table whose first header cell is ``first_header``."""
        found = [t for t in self.tables if t and t[0] and t[0][0] == first_header]
        assert len(found) == 1, f"{len(found)} tables start with {first_header!r}"
        return found[0]

    def rows(self, first_header: str) -> dict[str, list[str]]:
        """That table's rows by their first cell, header row left out."""
        return {row[0]: row[1:] for row in self.table(first_header)[1:]}


def render(markdown: str) -> Page:
    return Page(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))


def card_of(journal: Journal, ref: str = "support:1") -> str:
    return model_card(journal, resolve(journal, ref))


def test_the_card_shows_the_model_its_data_and_its_evaluation(setup: Setup, tmp_path: Path) -> None:
    setup.write(
        QUESTIONS[:3],
        [(q, a, lang) for (q, a), lang in zip(QUESTIONS, ["en", "en", "de", "de"], strict=True)],
    )
    description = "Answers customer support tickets in English and German."
    run_id = setup.apply(setup.spec("fake_hosted", JUDGED, description))
    text = card_of(setup.journal)
    page = render(text)

    details = {name: value for name, (value,) in page.rows("Detail").items()}
    assert details["Model"] == "support:1"
    assert details["Stage"] == "candidate"
    assert details["Base model"] == "gpt-4o-mini-2024-07-18"
    assert details["Run"] == run_id
    assert details["Artifact"].startswith("hosted_model ft:fake:")
    assert description in page.paragraphs

    train_sha = hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    assert page.rows("Dataset")["train"][0] == "3"  # examples
    assert page.rows("Dataset")["train"][2] == train_sha
    settings = page.rows("Setting")
    assert settings["learning_rate_multiplier"] == ["2"]
    assert settings["epochs"] == ["1"]

    golden_sha = hashlib.sha256((tmp_path / "golden.jsonl").read_bytes()).hexdigest()
    assert page.rows("Evaluation")["Golden set"][0].startswith(f"{golden_sha}, 4 examples")
    metrics = page.rows("Metric")
    # value, baseline, threshold, result: it knows three of four; the base model none
    assert metrics["exact_match"] == ["0.750", "0.000", "-", "-"]
    assert metrics["llm_judge"] == ["0.875", "-", "≥ 0.600", "pass"]
    assert "slice language=de: exact_match = 0.500, below its threshold 0.900" in page.items
    assert any(p.startswith("Failed: 1 threshold missed") for p in page.paragraphs)

    (evaluation,) = setup.journal.evaluations(setup.journal.targets(run_id)[0].id)
    judge = next(m for m in evaluation.result["metrics"] if m["metric"] == "llm_judge")
    interval = f"{judge['detail']['ci_low']:.3f} to {judge['detail']['ci_high']:.3f}"
    (line,) = [p for p in page.paragraphs if p.startswith("Win rate against the baseline")]
    assert f"0.875 (95% confidence interval {interval})" in line
    assert "3 wins, 1 tie, 0 losses over 4 examples" in line

    slices = page.rows("language")
    assert slices["de"][:2] == ["2", "0.500 (≥ 0.900: FAIL)"]
    assert slices["en"][:2] == ["2", "1.000"]

    # The one example it got wrong, as the model answered it.
    assert page.pres == [QUESTIONS[3][0], QUESTIONS[3][1], UNSURE]
    assert "The golden set has 4 examples, fewer than the 200" in text

    # Deterministic, and what `tunefleet models card -o` writes.
    assert card_of(setup.journal) == text
    out = tmp_path / "card.md"
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    assert main(["--state", url, "models", "card", "support:1", "-o", str(out)]) == 0
    assert out.read_text() == text


HOSTILE_QUESTION = "What is <img src=x onerror=alert(1)> | a | b |?\n# not a heading\n**bold** [x](https://evil.example)"
HOSTILE_EXPECTED = "```\n</code></pre><script>alert('x')</script>\n| c | d |"
HOSTILE_ANSWER = "- not a list\n<b>bold</b> & `code` | e |\n````"


def test_hostile_text_from_the_data_is_shown_literally(setup: Setup) -> None:
    long_answer = "word " * 300
    setup.write(
        train=[("Known", HOSTILE_ANSWER)],
        golden=[
            ("Known", "Something else entirely.", "de|<i>x</i>"),
            (HOSTILE_QUESTION, HOSTILE_EXPECTED, "en"),
            ("Long", long_answer, "en"),
        ],
    )
    description = (
        "# Title?\n- item <script>alert(1)</script> | pipe\n\n1. Second [link](http://x) `tick"
    )
    setup.apply(
        setup.spec(
            "fake_hosted", {"metrics": ["exact_match"], "slice_by": ["language"]}, description
        )
    )
    page = render(card_of(setup.journal))

    allowed = {
        "h1",
        "h2",
        "h3",
        "h4",
        "p",
        "ul",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "pre",
        "code",
        "strong",
    }
    assert {tag for tag, _ in page.tags} <= allowed, "no markup from the data"
    assert not any(tag == "h1" for tag, _ in page.tags[1:]), "one title only"

    assert (
        page.paragraphs[
            page.paragraphs.index("# Title? - item <script>alert(1)</script> | pipe") + 1
        ]
        == "1. Second [link](http://x) `tick"
    )

    # Slice values: one cell, as written, in a table as wide as its header.
    table = page.table("language")
    assert all(len(row) == len(table[0]) for row in table)
    assert page.rows("language")["de|<i>x</i>"][0] == "1"

    # Questions and answers verbatim, the longest cut to MAX_CASE_CHARS.
    assert HOSTILE_QUESTION in page.pres and HOSTILE_EXPECTED in page.pres
    assert HOSTILE_ANSWER in page.pres
    assert long_answer[:MAX_CASE_CHARS] in page.pres and long_answer not in page.pres
    assert (
        f"Expected (first {MAX_CASE_CHARS} of {len(long_answer):,} characters):" in page.paragraphs
    )
    assert any(h.endswith("language=de|<i>x</i>; exact_match 0.000") for h in page.headings)


def test_a_model_that_was_not_evaluated_has_a_card_that_says_so(setup: Setup) -> None:
    setup.write(QUESTIONS, [])
    setup.apply(setup.spec("fake", None))
    text = card_of(setup.journal)
    page = render(text)
    assert "Evaluation" not in page.headings and "Known failure cases" not in page.headings
    assert page.items[-1].startswith(
        "This version was not evaluated: its spec has no evaluation section"
    )
    assert any(p.startswith("No intended use was given") for p in page.paragraphs)
    assert page.rows("Dataset")["train"][0] == "4"
