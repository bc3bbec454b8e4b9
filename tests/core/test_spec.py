"""Spec loading: valid specs load; every invalid one fails with file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunefleet.errors import InputFileError, SpecError
from tunefleet.spec import RunSpec, load_spec, parse_spec

VALID = """\
name: support-bot
base_model: gpt-4o-mini-2024-07-18
dataset: data/train.jsonl
method: dpo
targets:
  - provider: fake
    region: fake-eu-1
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def messages(exc: SpecError) -> list[str]:
    return [str(issue) for issue in exc.issues]


def test_valid_spec_loads_with_shorthands_and_resolves_paths(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    assert spec.name == "support-bot"
    assert spec.method.type == "dpo"
    assert spec.dataset.train == "data/train.jsonl"
    assert spec.targets[0].key == "fake"
    assert spec.resolve_location(spec.dataset.train) == str(tmp_path / "data" / "train.jsonl")
    assert spec.resolve_location("s3://bucket/train.jsonl") == "s3://bucket/train.jsonl"


def test_error_names_file_line_and_key_path(tmp_path: Path) -> None:
    text = VALID + "    compute:\n      instance_count: 0\n"
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert messages(caught.value) == [
        f"{tmp_path / 'spec.yaml'}:9 targets[0].compute.instance_count: must be >= 1"
    ]


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    text = VALID + "hyperparameters:\n  learnin_rate: 0.1\n"
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    (issue,) = caught.value.issues
    assert issue.line == 9
    assert issue.path == "hyperparameters"
    assert "unknown key 'learnin_rate' (did you mean 'learning_rate'?)" in issue.message


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    text = "name: Bad_Name\nbase_model: m\ndataset: d.jsonl\ntargets: []\nextra: 1\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source="s.yaml")
    lines = [issue.line for issue in caught.value.issues]
    assert lines == sorted(lines)
    paths = {issue.path for issue in caught.value.issues}
    assert {"name", "targets", "(top level)"} <= paths


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: a\nname: b\n", 2, "duplicate key 'name'"),
        ("name: [unclosed\n", 2, "invalid YAML"),
        ("- just\n- a list\n", 1, "must be a mapping"),
        ("1: one\n", 1, "must be a string"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
            None,
            "more than 100000 nodes",
        ),
    ],
)
def test_malformed_yaml_fails_with_its_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source="s.yaml")
    (issue,) = caught.value.issues
    assert fragment in issue.message
    if line is not None:
        assert issue.line == line


def test_secrets_are_refused_without_echoing_them(tmp_path: Path) -> None:
    text = (
        VALID
        + "    options:\n      api_key: hunter2-very-secret\n      note: sk-abcdefghijklmnopqrstuvwxyz123456\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    rendered = str(caught.value)
    assert "targets[0].options.api_key" in rendered
    assert "targets[0].options.note" in rendered
    assert "hunter2" not in rendered and "sk-abc" not in rendered


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("hyperparameters:\n  learning_rate: 0.1\n  learning_rate_multiplier: 2\n", "not both"),
        ("placement:\n  required_tags: [owner]\n", "'owner' not set in placement.tags"),
        ("placement:\n  tags: {aws:owner: me}\n", "reserved"),
        ("  - provider: fake\n", "both named 'fake'"),
        ("method: {type: supervised, beta: 0.1}\n", "beta applies only"),
        ("evaluation:\n  golden_set: g.jsonl\n  metrics: [llm_judge]\n", "needs judge_model"),
        (
            "endpoint:\n  autoscaling: {min_instances: 3, max_instances: 2}\n",
            "min_instances must be <= max_instances",
        ),
        ("description: x\ndataset: ftp://host/train.jsonl\n", "URI scheme 'ftp'"),
    ],
)
def test_inconsistent_specs_are_refused(tmp_path: Path, extra: str, fragment: str) -> None:
    text = (
        VALID.replace("method: dpo\n", "") + extra if extra.startswith("method") else VALID + extra
    )
    if "dataset: ftp" in extra:
        text = VALID.replace("dataset: data/train.jsonl\n", "") + extra
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert fragment in str(caught.value)


def test_hostile_names_are_refused(tmp_path: Path) -> None:
    text = VALID.replace("name: support-bot", "name: ../../etc/passwd")
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text))
    assert caught.value.issues[0].path == "name"
    assert caught.value.issues[0].line == 1


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        (b"\x00\x01binary", "binary file"),
        (b"", "empty"),
        (b"name: \xff\xfe\n", "not valid UTF-8"),
    ],
)
def test_unreadable_spec_files(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((InputFileError, SpecError)) as caught:
        load_spec(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_directory_and_oversized_specs(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="directory"):
        load_spec(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(InputFileError, match="too large"):
        load_spec(big)


def test_schema_forbids_unknown_keys_everywhere() -> None:
    schema = RunSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name
    assert "placement" in schema["properties"]
