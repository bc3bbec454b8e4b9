"""The HTML report: well-formed charts, hostile text escaped, nothing loaded from outside;
each target's evaluation and registry entry as a reader relies on them."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.core.test_model_card import (
    HOSTILE_ANSWER,
    HOSTILE_EXPECTED,
    HOSTILE_QUESTION,
    JUDGED,
    QUESTIONS,
    Page,
    Setup,
)

from tunefleet.events import JobState, LogEvent, MetricEvent, StatusEvent
from tunefleet.plugins import Registry
from tunefleet.run.report import render_report
from tunefleet.state import Owner, open_journal
from tunefleet.testing.fake import UNSURE


def test_report_escapes_what_providers_say_and_draws_valid_svg(tmp_path: Path) -> None:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    journal.ensure_run(
        run_id="demo-12345678", name="demo", identity="1" * 64, spec={},
        spec_source="<b>spec</b>.yaml", datasets={},
    )  # fmt: skip
    target, _ = journal.ensure_target(
        run_id="demo-12345678", name="t0", config_hash="0" * 64,
        run_key_for=lambda a: f"key{a}", provider="fake", region=None, plan={
            "target": "t0", "provider": "fake", "region": None, "options": {},
        },
    )  # fmt: skip
    owner = Owner.here()
    journal.acquire(target.id, owner)
    now = datetime.now(UTC)
    hostile = "<script>alert('x')</script>"
    events = [
        StatusEvent(id="s", time=now, state=JobState.FAILED, message=hostile),
        LogEvent(id="l", time=now, level="error", message=f"OOM {hostile}"),
        *(
            MetricEvent(id=f"m{i}", time=now, step=i, train_loss=2 / i, valid_loss=2.2 / i)
            for i in range(1, 6)
        ),
    ]
    journal.record_events(target.id, owner, events, "7")
    journal.update_target(target.id, owner, phase="done", state="failed", message=hostile)
    html = render_report(journal, journal.run("demo-12345678"))
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;spec&lt;/b&gt;.yaml" in html
    (svg,) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    chart = ET.fromstring(svg)  # well-formed XML
    lines = chart.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and len(lines[0].get("points", "").split()) == 5
    journal.close()


# ---------------------------------------------------------------------- evaluation


@pytest.fixture
def setup(tmp_path: Path, registry: Registry) -> Iterator[Setup]:
    journal = open_journal(f"sqlite:///{tmp_path / 'journal.db'}")
    yield Setup(tmp_path, journal, registry)
    journal.close()


def report_of(setup: Setup, run_id: str) -> tuple[str, Page]:
    html = render_report(setup.journal, setup.journal.run(run_id))
    return html, Page(html)


def assert_self_contained(page: Page) -> None:
    """Nothing in the page runs or loads anything: no script, no embedded or linked
    resource, and every link goes to a place on the page itself."""
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "image", "use"}
    for tag, attrs in page.tags:
        assert "src" not in attrs and not any(name.startswith("on") for name in attrs), tag
        if tag == "a":
            assert (attrs.get("href") or "").startswith("#"), attrs


def test_report_shows_each_targets_evaluation_and_registry_entry(
    setup: Setup, tmp_path: Path
) -> None:
    languages = ["en", "en", "de", "de"]
    setup.write(
        QUESTIONS[:3], [(q, a, lang) for (q, a), lang in zip(QUESTIONS, languages, strict=True)]
    )
    run_id = setup.apply(setup.spec("fake_hosted", JUDGED))
    _, page = report_of(setup, run_id)
    assert_self_contained(page)

    # Metrics: new model, baseline, change, threshold, result.
    metrics = page.rows("metric")
    assert metrics["exact_match"] == ["0.750", "0.000", "+0.750", "-", "-"]
    assert metrics["llm_judge"] == ["0.875", "-", "-", "≥ 0.600", "pass"]
    assert "slice language=de: exact_match = 0.500, below its threshold 0.900" in page.items
    (evaluation,) = setup.journal.evaluations(setup.journal.targets(run_id)[0].id)
    detail = next(m for m in evaluation.result["metrics"] if m["metric"] == "llm_judge")["detail"]
    (judge,) = [p for p in page.paragraphs if p.startswith("Win rate against the baseline")]
    assert (
        f"0.875 (95% confidence interval {detail['ci_low']:.3f} to {detail['ci_high']:.3f})"
        in judge
    )
    assert "3 wins, 1 tie, 0 losses over 4 examples" in judge

    slices = page.rows("language")
    assert slices["de"][:2] == ["2", "0.500 (baseline 0.000) ≥ 0.900 FAIL"]
    assert slices["en"][:2] == ["2", "1.000 (baseline 0.000)"]

    # The worst example, both answers side by side with the verdict.
    (case,) = page.rows("example").items()
    assert case == (
        "line 4 language=de",
        [QUESTIONS[3][0], QUESTIONS[3][1], UNSURE, UNSURE, "tie exact_match 0.000 vs 0.000"],
    )

    # The registry entry, its data hashes linked to the datasets they name.
    train_sha = hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    golden_sha = hashlib.sha256((tmp_path / "golden.jsonl").read_bytes()).hexdigest()
    entry = page.rows("target")["fake_hosted"]
    assert entry[:2] == ["support:1", "candidate"]
    assert entry[3] == f"train (3 examples): {train_sha} golden_set (4 examples): {golden_sha}"
    ids = {attrs.get("id") for _, attrs in page.tags}
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links.count("#dataset-train") == 1 and links.count("#dataset-golden_set") == 2
    assert {link.removeprefix("#") for link in links} <= ids
    assert page.rows("role")["train"][-1] == train_sha  # the row the link goes to


def test_hostile_golden_text_is_escaped_in_the_report(setup: Setup) -> None:
    setup.write(
        train=[("Known", HOSTILE_ANSWER)],
        golden=[
            ("Known", "Something else entirely.", "de|<i>x</i>"),
            (HOSTILE_QUESTION, HOSTILE_EXPECTED, "en"),
        ],
    )
    # A JSON Schema is kept with the run's datasets; it is not a data file to list.
    (setup.tmp_path / "schema.json").write_text('{"type": "object"}')
    evaluation = {
        "metrics": ["exact_match", "json_schema"],
        "json_schema": "schema.json",
        "slice_by": ["language"],
    }
    run_id = setup.apply(setup.spec("fake_hosted", evaluation))
    html, page = report_of(setup, run_id)
    assert_self_contained(page)
    assert "<script" not in html and "<img" not in html and "<i>x" not in html
    assert "&lt;script&gt;" in html

    assert set(page.rows("role")) == {"train", "golden_set"}
    assert "de|<i>x</i>" in page.rows("language")
    cases = page.rows("example")
    flat = " ".join
    assert cases["line 1 language=de|<i>x</i>"][:3] == [
        "Known",
        "Something else entirely.",
        flat(HOSTILE_ANSWER.split()),
    ]
    assert cases["line 2 language=en"][:2] == [
        flat(HOSTILE_QUESTION.split()),
        flat(HOSTILE_EXPECTED.split()),
    ]


def test_a_run_without_evaluation_renders_and_says_so(setup: Setup) -> None:
    setup.write(QUESTIONS, [])
    run_id = setup.apply(setup.spec("fake", None))
    _, page = report_of(setup, run_id)
    assert_self_contained(page)
    assert any(p.startswith("None: the spec has no evaluation section") for p in page.paragraphs)
    assert page.rows("target")["fake"][:2] == ["support:1", "candidate"]
