"""Spec loading: valid specs load; every invalid one fails with file, line and key path."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tunefleet.errors import InputFileError, SpecError
from tunefleet.spec import load_spec, parse_spec, published_schema

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
        ("name: x\ndescription: &r [*r]\n", 2, "recursive alias *r"),
        ("name: x\nplacement: &p {tags: {a: *p}}\n", 2, "recursive alias *p"),
        ("name: x\nmethod: &m {<<: *m}\n", 2, "recursive alias *m"),
        ("description: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64 levels"),
        ("description: " + "{a: " * 600 + "}" * 600 + "\n", 1, "nested more than 64 levels"),
        (
            "a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 40 + "*a" + "]" * 40 + "\n",
            2,
            "b is nested more than 64 levels deep (through aliases)",
        ),
        ("name: x\nepochs: !!int abc\n", 2, "'abc' is not a !!int"),
        ("name: x\nspot: !!bool maybe\n", 2, "'maybe' is not a !!bool"),
        ("name: x\nseed: " + "1" * 5000 + "\n", 2, "is not a !!int"),
        ("name: x\n---\nname: y\n", 2, "invalid YAML"),
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
        ("evaluation:\n  golden_set: g.jsonl\n  metrics: [llm_judge]\n", "needs a judge"),
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
    schema = published_schema()
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name
    assert "placement" in schema["properties"]


def test_the_published_schema_describes_every_key_with_its_docstring() -> None:
    """Editors show these descriptions; they come from the docstring under each field."""
    schema = published_schema()
    models = {"RunSpec": schema, **schema["$defs"]}
    undescribed = [
        f"{model}.{key}"
        for model, definition in models.items()
        for key, prop in definition.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]
    assert undescribed == []
    train = schema["$defs"]["DatasetSpec"]["properties"]["train"]["description"]
    assert train == "Training examples, one JSON object per line."


@pytest.mark.parametrize(
    ("value", "tag", "kind"),
    [
        ("!!python/object/apply:os.system [echo pwned]", "!!python/object/apply:os.system", "list"),
        ("!!python/object:os.system {a: 1}", "!!python/object:os.system", "mapping"),
        ("!!python/name:os.system ''", "!!python/name:os.system", "value"),
        ("!!set {a, b}", "!!set", "mapping"),
        ("!!omap [a: 1]", "!!omap", "list"),
        ("!!map {a: 1}", "!!map", "mapping"),
        ("!!seq [a]", "!!seq", "list"),
        ("!foo bar", "!foo", "value"),
        ("!foo {a: 1}", "!foo", "mapping"),
        ("[a, !foo b]", "!foo", "value"),
        ("!<tag:example.com,2000:x> 1", "tag:example.com,2000:x", "value"),
        ("!!binary aGVsbG8=", "!!binary", "value"),
        ("!!timestamp 2024-01-01", "!!timestamp", "value"),
        ("! [a]", "!", "list"),
    ],
)
def test_yaml_tags_are_refused_with_file_and_line(
    tmp_path: Path, value: str, tag: str, kind: str
) -> None:
    path = write(tmp_path, VALID + f"description: {value}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert messages(caught.value) == [
        f"{path}:8: YAML tag {tag!r} on a {kind} is not allowed "
        "(a spec holds plain strings, numbers, booleans, lists and mappings)"
    ]


def test_standard_scalar_tags_are_allowed(tmp_path: Path) -> None:
    text = VALID + "description: !!str 123\nhyperparameters:\n  epochs: !!int '3'\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.description == "123" and spec.hyperparameters.epochs == 3


FLOAT_FIELDS = [
    ("hyperparameters:\n  learning_rate: {v}\n", 9, "hyperparameters.learning_rate"),
    ("hyperparameters:\n  warmup_ratio: {v}\n", 9, "hyperparameters.warmup_ratio"),
    ("hyperparameters:\n  max_grad_norm: {v}\n", 9, "hyperparameters.max_grad_norm"),
    (
        "hyperparameters:\n  learning_rate_multiplier: {v}\n",
        9,
        "hyperparameters.learning_rate_multiplier",
    ),
    ("hyperparameters:\n  lora:\n    alpha: {v}\n", 10, "hyperparameters.lora.alpha"),
    ("hyperparameters:\n  lora:\n    dropout: {v}\n", 10, "hyperparameters.lora.dropout"),
    ("    compute:\n      max_runtime_hours: {v}\n", 9, "targets[0].compute.max_runtime_hours"),
    ("    options:\n      anything: {v}\n", 9, "targets[0].options.anything"),
    (
        "evaluation:\n  golden_set: g.jsonl\n  metrics: [bleu]\n  thresholds: {{bleu: {v}}}\n",
        11,
        "evaluation.thresholds.bleu",
    ),
]


@pytest.mark.parametrize(("template", "line", "field"), FLOAT_FIELDS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [(".inf", ".inf"), ("-.inf", "-.inf"), (".nan", ".nan"), (".NaN", ".nan"), ("+.Inf", ".inf")],
)
def test_non_finite_numbers_are_refused_in_every_float_field(
    tmp_path: Path, template: str, line: int, field: str, value: str, shown: str
) -> None:
    path = write(tmp_path, VALID + template.format(v=value))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert messages(caught.value) == [
        f"{path}:{line} {field}: must be a finite number, not {shown}"
    ]


def test_method_beta_is_finite_too(tmp_path: Path) -> None:
    text = VALID.replace("method: dpo\n", "method: {type: dpo, beta: .inf}\n")
    with pytest.raises(SpecError, match=r"spec.yaml:4 method.beta: must be a finite number"):
        load_spec(write(tmp_path, text))


@pytest.mark.parametrize(
    ("extra", "line", "field", "message"),
    [
        (
            "hyperparameters:\n  epochs: true\n",
            9,
            "hyperparameters.epochs",
            "must be an integer, not the boolean true",
        ),
        (
            "hyperparameters:\n  batch_size: false\n",
            9,
            "hyperparameters.batch_size",
            "must be an integer, not the boolean false",
        ),
        (
            "hyperparameters:\n  seed: yes\n",
            9,
            "hyperparameters.seed",
            "must be an integer, not the boolean true",
        ),
        (
            "hyperparameters:\n  learning_rate: true\n",
            9,
            "hyperparameters.learning_rate",
            "must be a number, not the boolean true",
        ),
        (
            "hyperparameters:\n  lora: {rank: true}\n",
            9,
            "hyperparameters.lora.rank",
            "must be an integer, not the boolean true",
        ),
        (
            "    compute: {instance_count: true}\n",
            8,
            "targets[0].compute.instance_count",
            "must be an integer, not the boolean true",
        ),
        (
            "    compute: {max_runtime_hours: on}\n",
            8,
            "targets[0].compute.max_runtime_hours",
            "must be a number, not the boolean true",
        ),
        ("version: true\n", 8, "version", "must be a number, not the boolean true"),
        (
            "hyperparameters:\n  epochs: '3'\n",
            9,
            "hyperparameters.epochs",
            "must be an integer, not a string",
        ),
        ("hyperparameters:\n  epochs: 3.0\n", 9, "hyperparameters.epochs", "must be an integer"),
        (
            "hyperparameters:\n  learning_rate: '1e-4'\n",
            9,
            "hyperparameters.learning_rate",
            "must be a number, not a string",
        ),
        ("    compute: {spot: 1}\n", 8, "targets[0].compute.spot", "must be true or false"),
        ("    compute: {spot: 'true'}\n", 8, "targets[0].compute.spot", "must be true or false"),
    ],
)
def test_numbers_and_booleans_are_strict(
    tmp_path: Path, extra: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, VALID + extra)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert messages(caught.value) == [f"{path}:{line} {field}: {message}"]


def test_whole_numbers_and_exponents_still_fill_float_fields(tmp_path: Path) -> None:
    text = VALID + "hyperparameters:\n  learning_rate_multiplier: 2\n  lora: {alpha: 16}\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.hyperparameters.learning_rate_multiplier == 2.0
    assert spec.hyperparameters.lora is not None and spec.hyperparameters.lora.alpha == 16.0
    # YAML 1.1 reads 1e-4 as text; strict validation must not refuse what users write.
    spec = load_spec(write(tmp_path, VALID + "hyperparameters:\n  learning_rate: 1e-4\n"))
    assert spec.hyperparameters.learning_rate == 0.0001
    with pytest.raises(SpecError, match=r"learning_rate: must be a finite number, not \.inf"):
        load_spec(write(tmp_path, VALID + "hyperparameters:\n  learning_rate: 1e999\n"))


def _special(tmp_path: Path, kind: str) -> str:
    """A path (relative to tmp_path, where the spec is) naming something not a file."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe.jsonl")
        return "pipe.jsonl"
    if kind == "directory":
        (tmp_path / "folder").mkdir()
        return "folder"
    if kind == "loop":
        (tmp_path / "a.jsonl").symlink_to("b.jsonl")
        (tmp_path / "b.jsonl").symlink_to("a.jsonl")
        return "a.jsonl"
    if kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "s.jsonl"))
        server.close()
        return "s.jsonl"
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        return "file/train.jsonl"
    return kind  # an absolute path: /dev/zero...


SPECIAL = [
    ("fifo", "pipe.jsonl: is a FIFO (named pipe), not a regular file"),
    ("directory", "folder: is a directory, not a regular file"),
    ("loop", "a.jsonl: too many levels of symbolic links (a symlink loop?)"),
    ("socket", "s.jsonl: is a socket, not a regular file"),
    ("under-a-file", "file/train.jsonl: a component of the path is not a directory"),
    ("/dev/zero", "/dev/zero: is a character device, not a regular file"),
    ("/dev/null", "/dev/null: is a character device, not a regular file"),
]


@pytest.mark.parametrize(("kind", "message"), SPECIAL)
@pytest.mark.parametrize(
    ("template", "line", "field"),
    [
        ("dataset: {p}\n", 3, "dataset"),
        ("dataset:\n  train: {p}\n", 4, "dataset.train"),
        ("dataset:\n  train: t.jsonl\n  validation: {p}\n", 5, "dataset.validation"),
        ("evaluation: {{golden_set: {p}, metrics: [bleu]}}\n", 8, "evaluation.golden_set"),
    ],
)
def test_local_paths_that_are_not_regular_files_are_refused_at_their_field(
    tmp_path: Path, kind: str, message: str, template: str, line: int, field: str
) -> None:
    special = _special(tmp_path, kind)
    if field == "evaluation.golden_set":
        text = VALID + template.format(p=special)
    else:
        text = VALID.replace("dataset: data/train.jsonl\n", template.format(p=special))
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert messages(caught.value) == [f"{path}:{line} {field}: {message}"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"data/train\\0.jsonl"', "must not contain a NUL byte"),
        ('"data/\\x1b[2Jtrain.jsonl"', "must not contain control characters"),
        ("''", "must be a path or URI of 1 to 2048 characters"),
    ],
)
def test_dataset_paths_with_nul_or_control_bytes_are_refused(
    tmp_path: Path, value: str, message: str
) -> None:
    path = write(tmp_path, VALID.replace("dataset: data/train.jsonl", f"dataset: {value}"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert messages(caught.value) == [f"{path}:3 dataset: {message}"]


def test_missing_datasets_are_errors_only_when_files_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert load_spec(path).dataset.train == "data/train.jsonl"  # the API may plan elsewhere
    with pytest.raises(SpecError) as caught:
        load_spec(path, require_files=True)
    assert messages(caught.value) == [f"{path}:3 dataset: data/train.jsonl: no such file"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    assert load_spec(path, require_files=True).dataset.train == "data/train.jsonl"


@pytest.mark.parametrize(
    "kind", ["fifo", "socket", "loop", "/dev/zero", "/dev/null", "under-a-file"]
)
def test_spec_files_that_are_not_regular_files_are_refused_before_reading(
    tmp_path: Path, kind: str
) -> None:
    name = _special(tmp_path, kind)
    path = tmp_path / name if not name.startswith("/") else Path(name)
    with pytest.raises(InputFileError) as caught:
        load_spec(path)
    problem = dict(SPECIAL)[kind].split(": ", 1)[1].replace("a regular file", "a spec file")
    assert str(caught.value) == f"{path}: {problem}"


def test_defaults_are_fresh_for_every_spec(tmp_path: Path) -> None:
    """A spec's empty options and tags are its own: a plugin that fills one spec's in place
    leaves the next spec's empty."""
    first, second = (load_spec(write(tmp_path, VALID, f"{n}.yaml")) for n in ("a", "b"))
    first.targets[0].options["injected"] = True
    first.placement.tags["team"] = "x"
    assert second.targets[0].options == {} and second.placement.tags == {}
    assert second.placement.required_tags == []
