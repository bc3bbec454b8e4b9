"""The golden set's answers: made by the trainer around a real run, and by answer.py later."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tunefleet_trainer.answer import main as answer_main
from tunefleet_trainer.config import TrainerConfig
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.metrics import read_metric_line
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    Prediction,
    format_progress_line,
    golden_examples,
    read_predictions,
    read_progress_line,
)
from tunefleet_trainer.train import train

from .conftest import write_jsonl

SELECTED = 4
"""Golden examples answered: the quickstart's validation set holds 6, max_examples is 4."""
MAX_NEW_TOKENS = 12


@dataclass(frozen=True)
class Run:
    """One finished training run with a golden set, shared by the tests that read it."""

    config: TrainerConfig
    golden: Path
    out: Path
    lines: list[str]
    manifest: dict[str, Any]


def _config(root: Path, train_file: Path, golden: Path, **evaluation: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(
        {
            "base_model": "scratch:tiny",
            "adapter": "lora",
            "hyperparameters": {
                "epochs": 1,
                "batch_size": 8,
                "learning_rate": 0.003,
                "seed": 5,
                "max_seq_length": 128,
                "lora": {"rank": 4, "dropout": 0.0},
            },
            "train": str(train_file),
            "output_dir": str(root / "out"),
            "device": "cpu",
            "evaluation": {
                "golden_set": str(golden),
                "max_examples": SELECTED,
                "generation": {"max_new_tokens": MAX_NEW_TOKENS},
                **evaluation,
            },
        }
    )


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, quickstart_train: Path, quickstart_validation: Path
) -> Run:
    root = tmp_path_factory.mktemp("evaluated")
    golden = root / "golden"  # a directory holding one .jsonl, as a SageMaker channel is
    golden.mkdir()
    shutil.copy(quickstart_validation, golden / "golden.jsonl")
    config = _config(root, quickstart_train, golden)
    lines: list[str] = []
    manifest = train(config, log=lines.append)
    return Run(config, golden / "golden.jsonl", root / "out", lines, manifest)


def _answers(path: Path) -> list[Prediction]:
    return read_predictions(path.read_bytes(), source=str(path))


def _progress(lines: list[str], model: str) -> list[int]:
    found = [read_progress_line(line) for line in lines]
    return [p["done"] for p in found if p is not None and p["model"] == model]


def test_a_run_answers_the_golden_set_before_and_after_training(run: Run) -> None:
    for name in (PREDICTIONS_NAME, BASELINE_PREDICTIONS_NAME):
        answers = _answers(run.out / name)
        assert [a.index for a in answers] == list(range(SELECTED)), "max_examples is respected"
        for answer in answers:
            assert answer.finish_reason in {"stop", "length"}
            assert answer.completion_tokens is not None
            assert 0 < answer.completion_tokens <= MAX_NEW_TOKENS
            assert answer.prompt_tokens is not None and answer.prompt_tokens > 0

    expected_lines = [
        format_progress_line(task="predict", model=model, done=done, total=SELECTED)
        for model in ("baseline", "trained")
        for done in range(1, SELECTED + 1)
    ]
    assert [line for line in run.lines if read_progress_line(line)] == expected_lines
    metric_at = [i for i, line in enumerate(run.lines) if read_metric_line(line)]
    assert run.lines.index(expected_lines[SELECTED - 1]) < metric_at[0], "baseline first"
    assert run.lines.index(expected_lines[SELECTED]) > metric_at[-1], "trained answers last"


def test_the_manifest_lists_the_answers_and_what_they_answer(run: Run) -> None:
    on_disk = json.loads((run.out / "manifest.json").read_text())
    assert on_disk == run.manifest
    assert on_disk["predictions"] == {
        "files": {
            "predictions": PREDICTIONS_NAME,
            "baseline_predictions": BASELINE_PREDICTIONS_NAME,
        },
        "examples": SELECTED,
        "golden_sha256": hashlib.sha256(run.golden.read_bytes()).hexdigest(),
        "generation": {"decoding": "greedy", "max_new_tokens": MAX_NEW_TOKENS},
    }
    assert on_disk["artifacts"] == {"adapter": "adapter", "base": "base"}, "existing keys kept"
    checkpoint_copy = run.config.checkpoints / BASELINE_PREDICTIONS_NAME
    assert checkpoint_copy.read_bytes() == (run.out / BASELINE_PREDICTIONS_NAME).read_bytes()


def test_the_trained_answers_are_what_the_saved_model_answers(run: Run) -> None:
    """The predictions come from the model that is deployed, not something near it."""
    from tunefleet_trainer.inference import load_trained

    model = load_trained(run.out)
    examples = golden_examples(run.golden, SELECTED)
    texts = [
        model.complete(e.prompt, max_tokens=MAX_NEW_TOKENS, temperature=0).text for e in examples
    ]
    assert texts == [a.text for a in _answers(run.out / PREDICTIONS_NAME)]
    baseline = [a.text for a in _answers(run.out / BASELINE_PREDICTIONS_NAME)]
    assert texts != baseline, "training changed the answers"


def test_a_resumed_run_keeps_the_baseline_it_answered_before(
    run: Run, tmp_path: Path, quickstart_train: Path
) -> None:
    """Killed after its last checkpoint, before the manifest: the run starts again."""
    shutil.copytree(run.out / "checkpoints", tmp_path / "out" / "checkpoints")
    elsewhere = tmp_path / "answers"  # as SageMaker's /opt/ml/output/data is
    config = _config(tmp_path, quickstart_train, run.golden.parent, predictions_dir=str(elsewhere))
    lines: list[str] = []
    manifest = train(config, log=lines.append)

    assert any(line.startswith("resuming from") for line in lines)
    assert _progress(lines, "baseline") == [], "the baseline is not answered again"
    assert _progress(lines, "trained") == list(range(1, SELECTED + 1))
    assert (elsewhere / BASELINE_PREDICTIONS_NAME).read_bytes() == (
        run.out / BASELINE_PREDICTIONS_NAME
    ).read_bytes()
    assert _answers(elsewhere / PREDICTIONS_NAME) == _answers(run.out / PREDICTIONS_NAME)
    assert manifest["predictions"]["files"] == {
        "predictions": str(elsewhere / PREDICTIONS_NAME),
        "baseline_predictions": str(elsewhere / BASELINE_PREDICTIONS_NAME),
    }
    assert not (tmp_path / "out" / PREDICTIONS_NAME).exists()


@pytest.mark.parametrize(
    ("second_line", "problem"),
    [
        ("{not json", "not valid JSON"),
        (
            json.dumps({"messages": [{"role": "user", "content": "Where is my parcel?"}]}),
            "the last message must be the assistant's expected answer",
        ),
    ],
)
def test_a_malformed_golden_set_fails_before_anything_is_trained(
    tmp_path: Path, quickstart_train: Path, second_line: str, problem: str
) -> None:
    golden = tmp_path / "golden.jsonl"
    first = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    golden.write_text(json.dumps(first) + "\n" + second_line + "\n")
    with pytest.raises(TrainerError) as raised:
        train(_config(tmp_path, quickstart_train, golden))
    assert str(raised.value).startswith(f"{golden}:2: {problem}")
    assert not (tmp_path / "out").exists(), "no model was loaded, nothing was written"


def _requests(path: Path, golden: Path) -> Path:
    return write_jsonl(
        path,
        [
            {"messages": e.prompt, "max_tokens": MAX_NEW_TOKENS, "temperature": 0}
            for e in golden_examples(golden, SELECTED)
        ],
    )


def test_answer_answers_requests_with_a_trained_output_as_the_trainer_did(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = _requests(tmp_path / "requests.jsonl", run.golden)
    output = tmp_path / "answers.jsonl"
    argv = ["--model", str(run.out), "--requests", str(requests), "--output", str(output)]
    assert answer_main([*argv, "--device", "cpu"]) == 0
    progress = [read_progress_line(line) for line in capsys.readouterr().out.splitlines()]
    assert progress == [
        {"task": "answer", "model": "requested", "done": done, "total": SELECTED}
        for done in range(1, SELECTED + 1)
    ]
    answers = [json.loads(line) for line in output.read_text().splitlines()]
    trained = _answers(run.out / PREDICTIONS_NAME)
    assert answers == [
        {
            "text": p.text,
            "finish_reason": p.finish_reason,
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": p.completion_tokens,
        }
        for p in trained
    ]


def test_answer_with_the_base_model_gives_the_baseline_answers(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model directory answers as a base model; the trainer's baseline was exactly it."""
    requests = _requests(tmp_path / "requests.jsonl", run.golden)
    output = tmp_path / "answers.jsonl"
    argv = ["--model", str(run.out / "base"), "--requests", str(requests), "--output", str(output)]
    assert answer_main([*argv, "--device", "cpu"]) == 0
    texts = [json.loads(line)["text"] for line in output.read_text().splitlines()]
    assert texts == [p.text for p in _answers(run.out / BASELINE_PREDICTIONS_NAME)]
    assert capsys.readouterr().err == ""


def test_answer_refuses_bad_input_with_one_line_and_writes_nothing(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "answers.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(good + "\n" + '{"messages": [\n')
    bad_field = tmp_path / "field.jsonl"
    bad_field.write_text(good + "\n\n" + json.dumps({"messages": [], "max_tokens": 4}) + "\n")
    good_file = tmp_path / "good.jsonl"
    good_file.write_text(good + "\n")
    cases = [
        (str(run.out), tmp_path / "missing.jsonl", f"{tmp_path / 'missing.jsonl'}: "),
        (str(run.out), bad_json, f"{bad_json}:2: not valid JSON"),
        (str(run.out), bad_field, f"{bad_field}:3: messages: "),
        (str(tmp_path / "no-model"), good_file, f"base model {tmp_path / 'no-model'}: "),
        ("scratch:tiny", good_file, "scratch:tiny: a scratch model exists only inside its run"),
    ]
    for model, requests, message in cases:
        argv = ["--model", model, "--requests", str(requests), "--output", str(output)]
        assert answer_main([*argv, "--device", "cpu"]) == 2, message
        err = capsys.readouterr().err
        assert err.startswith(f"python -m tunefleet_trainer.answer: error: {message}"), err
        assert err.count("\n") == 1, err
        assert not output.exists()
    assert list(tmp_path.glob(".*partial")) == []


def test_answer_loads_the_training_stack_only_to_answer() -> None:
    """``--help`` and bad input are quick: importing the command imports no torch."""
    probe = "import sys, tunefleet_trainer.answer; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
