"""Every hostile input a user can give `data validate`, `plan` and `run` is refused the same
way: the documented exit status, exactly one line on stderr naming the file (and the spec's
line and field where there is one), no traceback, nothing hung and nothing written.

The CLI runs in this process (``tunefleet.cli.main``) so that a hundred cases take
seconds; a timer turns a hang into a failure. tests/core/test_cli.py runs a few of the
same cases as real subprocesses.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunefleet.cli import main

GOOD = (
    '{"messages": [{"role": "system", "content": "Be brief."}, '
    '{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n'
)

SPEC = """\
name: hostile
base_model: Qwen/Qwen2.5-0.5B-Instruct
dataset: {dataset}
targets:
  - provider: local
"""


@dataclass
class Env:
    """A project folder, the journal and work directory nothing may create, and stdio."""

    root: Path
    journal: Path
    workdir: Path
    capsys: pytest.CaptureFixture[str]

    def cli(self, *args: str) -> tuple[int, str, str]:
        status = main(list(args))
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    def spec(self, dataset: str, text: str | None = None) -> Path:
        path = self.root / "spec.yaml"
        path.write_text(text if text is not None else SPEC.format(dataset=dataset))
        return path


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Env]:
    root = tmp_path / "project"
    root.mkdir()
    journal = tmp_path / "state" / "journal.db"
    workdir = tmp_path / "work"
    monkeypatch.setenv("TUNEFLEET_STATE", f"sqlite:///{journal}")
    monkeypatch.setenv("TUNEFLEET_LOCAL_WORKDIR", str(workdir))
    monkeypatch.delenv("TUNEFLEET_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError("the command blocked for 30 seconds")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        yield Env(root, journal, workdir, capsys)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- datasets
# Each maker puts a hostile dataset in the project folder and returns how the spec (and
# the command line, from the project's parent) names it.


def _missing(root: Path) -> str:
    return "missing.jsonl"


def _directory(root: Path) -> str:
    (root / "folder.jsonl").mkdir()
    return "folder.jsonl"


def _fifo(root: Path) -> str:
    os.mkfifo(root / "pipe.jsonl")
    return "pipe.jsonl"


def _socket(root: Path) -> str:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock.jsonl"))
    server.close()
    return "sock.jsonl"


def _loop(root: Path) -> str:
    (root / "loop.jsonl").symlink_to("loop2.jsonl")
    (root / "loop2.jsonl").symlink_to("loop.jsonl")
    return "loop.jsonl"


def _under_a_file(root: Path) -> str:
    (root / "plain").write_text(GOOD)
    return "plain/train.jsonl"


def _unreadable(root: Path) -> str:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    (root / "locked.jsonl").write_text(GOOD)
    (root / "locked.jsonl").chmod(0)
    return "locked.jsonl"


def _content(name: str, data: bytes) -> Callable[[Path], str]:
    def make(root: Path) -> str:
        (root / name).write_bytes(data)
        return name

    return make


HUGE_LINE = b'{"messages": "' + b"x" * (33 << 20) + b'"}\n'

# (id, maker, exit status, what `data validate` says, what plan/run say after "spec.yaml:3
# dataset: "). {p} is the dataset as named, {abs} the absolute path validated.
DATASETS = [
    ("missing", _missing, 2, "error: {p}: no such file", "{p}: no such file"),
    ("directory", _directory, 2, "error: {p}: is a directory, not a JSONL file",
     "{p}: is a directory, not a regular file"),
    ("fifo", _fifo, 2, "error: {p}: is a FIFO (named pipe), not a JSONL file",
     "{p}: is a FIFO (named pipe), not a regular file"),
    ("socket", _socket, 2, "error: {p}: is a socket, not a JSONL file",
     "{p}: is a socket, not a regular file"),
    ("symlink-loop", _loop, 2, "error: {p}: too many levels of symbolic links (a symlink loop?)",
     "{p}: too many levels of symbolic links (a symlink loop?)"),
    ("under-a-file", _under_a_file, 2, "error: {p}: a component of the path is not a directory",
     "{p}: a component of the path is not a directory"),
    ("unreadable", _unreadable, 2, "error: {p}: permission denied", "{p}: permission denied"),
    ("binary", _content("bin.jsonl", b"\x7fELF\x00\x00\x01"), 2,
     "error: {p}: is a binary file, not JSONL text", "{p}: is a binary file, not JSONL text"),
    ("gzip", _content("gz.jsonl", gzip.compress(GOOD.encode())), 2,
     "error: {p}: is gzip-compressed; decompress it first",
     "{p}: is gzip-compressed; decompress it first"),
    ("empty", _content("empty.jsonl", b""), 1, "{p}: E005 no_examples: the file is empty",
     "{abs}: E005 no_examples: the file is empty"),
    ("blank-lines", _content("blank.jsonl", b"\n  \n\n"), 1,
     "{p}: E005 no_examples: the file holds no examples, only 3 blank line(s)",
     "{abs}: E005 no_examples: the file holds no examples"),
    ("invalid-utf8", _content("latin.jsonl", GOOD.encode() + b'{"messages": "caf\xe9"}\n'), 1,
     "{p}:2: E001 invalid_utf8", "{abs}:2: E001 invalid_utf8"),
    ("malformed-json", _content("broken.jsonl", (GOOD * 2).encode() + b'{"messages": [\n'), 1,
     "{p}:3: E002 invalid_json", "{abs}:3: E002 invalid_json"),
    ("wrong-types", _content("types.jsonl", b'{"messages": {"role": "user"}}\n'), 1,
     "{p}:1: E011 missing_messages_list", "{abs}:1: E011 missing_messages_list"),
    ("a-json-array", _content("array.jsonl", b"[1, 2]\n"), 1, "{p}:1: E010 data_type",
     "{abs}:1: E010 data_type"),
    ("huge-single-line", _content("huge.jsonl", HUGE_LINE), 1, "{p}:1: E004 line_too_long",
     "{abs}:1: E004 line_too_long"),
]  # fmt: skip


def _check_refusal(env: Env, status: int, err: str, expected_status: int, line: str) -> None:
    assert status == expected_status, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(line), (lines[0], line)


def _nothing_written(env: Env) -> None:
    assert not env.journal.exists(), "a journal was created"
    assert not env.journal.parent.exists()
    assert not env.workdir.exists(), "the local provider's work directory was created"


@pytest.mark.parametrize(
    ("maker", "status", "said"),
    [pytest.param(maker, status, said, id=name) for name, maker, status, said, _ in DATASETS],
)
def test_data_validate_refuses_hostile_datasets(
    env: Env, maker: Callable[[Path], str], status: int, said: str
) -> None:
    named = f"project/{maker(env.root)}"
    code, out, err = env.cli("data", "validate", named)
    if status == 2:  # the file cannot be read as a dataset: one line on stderr
        _check_refusal(env, code, err, 2, said.format(p=named))
        assert out == ""
    else:  # it was read: its findings, each as FILE:LINE: CODE, and exit 1
        assert (code, err) == (1, "")
        assert any(line.startswith(said.format(p=named)) for line in out.splitlines()), out
    _nothing_written(env)


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(
    ("maker", "status", "said"),
    [pytest.param(maker, status, said, id=name) for name, maker, status, _, said in DATASETS],
)
def test_plan_and_run_refuse_hostile_datasets_at_the_spec_line(
    env: Env, command: str, maker: Callable[[Path], str], status: int, said: str
) -> None:
    named = maker(env.root)
    spec = env.spec(named)
    code, _, err = env.cli(command, str(spec))
    absolute = env.root / named
    expected = f"error: {spec}:3 dataset: " + said.format(p=named, abs=absolute)
    _check_refusal(env, code, err, status, expected)
    if status == 1:  # the one line also says how to list every finding
        assert f"`tunefleet data validate {absolute}` lists each" in err
    _nothing_written(env)


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(
    ("maker", "said"),
    [
        pytest.param(_fifo, "is a FIFO (named pipe), not a regular file", id="fifo"),
        pytest.param(_missing, "no such file", id="missing"),
        pytest.param(_content("e.jsonl", b""), "E005 no_examples", id="empty"),
    ],
)
def test_a_hostile_validation_dataset_is_named_by_its_field(
    env: Env, command: str, maker: Callable[[Path], str], said: str
) -> None:
    (env.root / "train.jsonl").write_text(GOOD)
    named = maker(env.root)
    spec = env.spec(
        "",
        SPEC.replace(
            "dataset: {dataset}", f"dataset:\n  train: train.jsonl\n  validation: {named}"
        ),
    )
    code, _, err = env.cli(command, str(spec))
    assert code in (1, 2) and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"error: {spec}:5 dataset.validation: ") and said in line
    _nothing_written(env)


# --------------------------------------------------------------------------- specs


def _spec_text(text: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        (root / "train.jsonl").write_text(GOOD)
        path = root / "spec.yaml"
        path.write_text(text)
        return path

    return make


def _spec_bytes(data: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / "spec.yaml"
        path.write_bytes(data)
        return path

    return make


def _spec_special(kind: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / "spec.yaml"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "loop":
            path.symlink_to("spec.yaml")
        elif kind == "socket":
            server = socket.socket(socket.AF_UNIX)
            server.bind(str(path))
            server.close()
        elif kind == "device":
            return Path("/dev/zero")
        elif kind == "unreadable":
            if os.geteuid() == 0:
                pytest.skip("root reads every file")
            path.write_text(SPEC.format(dataset="train.jsonl"))
            path.chmod(0)
        return path

    return make


BASE = SPEC.format(dataset="train.jsonl")

# (id, maker, expected line after "error: "); {s} is the spec's path.
SPECS = [
    ("missing", _spec_special("missing"), "{s}: no such file"),
    ("directory", _spec_special("directory"), "{s}: is a directory, not a spec file"),
    ("fifo", _spec_special("fifo"), "{s}: is a FIFO (named pipe), not a spec file"),
    ("socket", _spec_special("socket"), "{s}: is a socket, not a spec file"),
    ("device", _spec_special("device"), "{s}: is a character device, not a spec file"),
    ("symlink-loop", _spec_special("loop"), "{s}: too many levels of symbolic links"),
    ("unreadable", _spec_special("unreadable"), "{s}: permission denied"),
    ("binary", _spec_bytes(b"\x7fELF\x00\x00"), "{s}: is a binary file, not a YAML spec"),
    ("invalid-utf8", _spec_bytes(b"name: x\ndescription: caf\xe9\n"), "{s}:2: not valid UTF-8"),
    ("too-large", _spec_bytes(b"#" * (2 << 20)), "{s}: 2,097,152 bytes is too large for a spec"),
    ("huge-single-line", _spec_bytes(b"description: " + b"x" * (1 << 20)), "{s}: 1,048,589 bytes is too large"),
    ("empty", _spec_bytes(b""), "{s}: the spec is empty"),
    ("a-list", _spec_text("- a\n- b\n"), "{s}:1: the spec must be a mapping"),
    ("yaml-syntax", _spec_text("name: [oops\n"), "{s}:2: invalid YAML"),
    ("two-documents", _spec_text(BASE + "---\nname: y\n"), "{s}:6: invalid YAML"),
    ("recursive-alias", _spec_text(BASE + "description: &r [*r]\n"), "{s}:6: recursive alias *r"),
    ("recursive-merge", _spec_text(BASE + "placement: &p {<<: *p}\n"), "{s}:6: recursive alias *p"),
    ("deep-nesting", _spec_text(BASE + "description: " + "[" * 900 + "]" * 900 + "\n"),
     "{s}:6: nested more than 64 levels deep"),
    ("python-tag", _spec_text(BASE + "description: !!python/object/apply:os.system [id]\n"),
     "{s}:6: YAML tag '!!python/object/apply:os.system' on a list is not allowed"),
    ("set-tag", _spec_text(BASE + "placement: !!set {a, b}\n"), "{s}:6: YAML tag '!!set' on a mapping"),
    ("custom-tag", _spec_text(BASE.replace("name: hostile", "name: !foo hostile")),
     "{s}:1: YAML tag '!foo' on a value"),
    ("bad-int", _spec_text(BASE + "hyperparameters: {epochs: !!int x}\n"), "{s}:6: invalid YAML value"),
    ("inf", _spec_text(BASE + "hyperparameters:\n  learning_rate: .inf\n"),
     "{s}:7 hyperparameters.learning_rate: must be a finite number, not .inf"),
    ("nan", _spec_text(BASE + "    compute: {max_runtime_hours: .nan}\n"),
     "{s}:6 targets[0].compute.max_runtime_hours: must be a finite number, not .nan"),
    ("bool-epochs", _spec_text(BASE + "hyperparameters:\n  epochs: true\n"),
     "{s}:7 hyperparameters.epochs: must be an integer, not the boolean true"),
    ("string-epochs", _spec_text(BASE + "hyperparameters:\n  epochs: '3'\n"),
     "{s}:7 hyperparameters.epochs: must be an integer, not a string"),
    ("wrong-type", _spec_text(BASE + "hyperparameters: 3\n"), "{s}:6 hyperparameters: must be a mapping"),
    ("unknown-key", _spec_text(BASE + "epochs: 3\n"), "{s}:6 (top level): unknown key 'epochs'"),
    ("nul-in-path", _spec_text(BASE.replace("train.jsonl", '"train\\0.jsonl"')),
     "{s}:3 dataset: must not contain a NUL byte"),
    ("device-dataset", _spec_text(BASE.replace("train.jsonl", "/dev/zero")),
     "{s}:3 dataset: /dev/zero: is a character device, not a regular file"),
    ("no-such-provider", _spec_text(BASE.replace("provider: local", "provider: nebius")),
     "{s}:5 targets[0].provider: provider 'nebius' is not installed (install the distribution that provides it)"),
    ("secret", _spec_text(BASE + "    options: {api_key: hunter2}\n"), "{s}:6 targets[0].options.api_key: looks like a secret"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize(
    ("maker", "said"), [pytest.param(maker, said, id=name) for name, maker, said in SPECS]
)
def test_plan_and_run_refuse_hostile_specs(
    env: Env, command: str, maker: Callable[[Path], Path], said: str
) -> None:
    spec = maker(env.root)
    code, out, err = env.cli(command, str(spec))
    _check_refusal(env, code, err, 2, "error: " + said.format(s=spec))
    assert out == ""
    assert "hunter2" not in err
    _nothing_written(env)


def test_the_debug_flag_alone_shows_a_traceback(env: Env) -> None:
    (env.root / "loop.jsonl").symlink_to("loop.jsonl")
    code, _, err = env.cli("--debug", "data", "validate", str(env.root / "loop.jsonl"))
    assert code == 2 and "Traceback" in err
    assert re.search(r"error: .*loop.jsonl: too many levels of symbolic links", err)
