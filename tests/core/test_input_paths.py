"""Paths a user names: the path types providers use for their options, and open_input."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tunefleet.errors import InputFileError, SpecError
from tunefleet.names import LocalDirectory, LocalFile, LocalPath, open_input
from tunefleet.spec import load_spec


class Options(BaseModel):
    """What a provider's options model looks like with tunefleet's path types."""

    script: LocalFile | None = None
    cache: LocalDirectory | None = None
    anywhere: LocalPath | None = None


def _error(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Options.model_validate(values, context={"base_dir": values.pop("base_dir", None)})
    (error,) = caught.value.errors()
    return str(error["ctx"]["error"])


def test_nul_and_control_characters_are_refused_in_every_path_type() -> None:
    for field in ("script", "cache", "anywhere"):
        assert _error(**{field: "a\x00b"}) == "must not contain a NUL byte"
        assert _error(**{field: "a\x1b[2Jb"}) == "must not contain control characters"
        assert _error(**{field: ""}) == "must be a path of 1 to 4096 characters"
        assert _error(**{field: "x" * 5000}) == "must be a path of 1 to 4096 characters"


def test_a_local_file_must_be_a_regular_file_where_one_exists(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    assert _error(script="/dev/zero") == "/dev/zero: is a character device, not a regular file"
    assert _error(script=str(tmp_path / "pipe")).endswith(
        "is a FIFO (named pipe), not a regular file"
    )
    assert _error(script="dir", base_dir=tmp_path) == "dir: is a directory, not a regular file"
    assert _error(cache="file", base_dir=tmp_path) == "file: is a regular file, not a directory"
    assert _error(cache="/dev/null") == "/dev/null: is a character device, not a directory"
    ok = Options.model_validate(
        {"script": "file", "cache": "dir", "anywhere": "/dev/zero"}, context={"base_dir": tmp_path}
    )
    assert ok.script == "file" and ok.cache == "dir"
    # Missing paths pass (a plan may name what a later step creates), and without a base
    # directory a relative path is checked for its text only.
    assert Options.model_validate({"script": "missing", "cache": "new"}).script == "missing"
    assert Options.model_validate({"script": "dir"}).script == "dir"


def test_open_input_refuses_what_is_not_a_regular_file_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    server.close()
    (tmp_path / "loop").symlink_to("loop")
    cases = {
        tmp_path / "pipe": "is a FIFO (named pipe), not a dataset",
        tmp_path / "sock": "is a socket, not a dataset",
        tmp_path / "loop": "too many levels of symbolic links (a symlink loop?)",
        tmp_path: "is a directory, not a dataset",
        Path("/dev/zero"): "is a character device, not a dataset",
        tmp_path / "missing": "no such file",
    }
    for path, problem in cases.items():
        with pytest.raises(InputFileError) as caught:
            open_input(path, what="dataset")
        assert str(caught.value) == f"{path}: {problem}"
    with pytest.raises(InputFileError, match=r"\\x00: the path contains a NUL byte$"):
        open_input(f"{tmp_path}/a\x00")
    (tmp_path / "ok").write_bytes(b"data")
    with open_input(tmp_path / "ok") as handle:
        assert handle.read() == b"data"


def test_paths_in_messages_cannot_drive_the_terminal(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as caught:
        open_input(tmp_path / "evil\x1b[2J\nname")
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).endswith("evil\\x1b[2J\\nname: no such file")


def test_permission_denied_is_one_line_even_for_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "train.jsonl"
    locked.write_text("{}\n")
    real_open, real_access = os.open, os.access

    def deny_open(path: object, *args: object, **kwargs: object) -> int:
        if os.fspath(path) == str(locked):  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    def deny_access(path: object, mode: int, **kwargs: object) -> bool:
        if os.fspath(path) == str(locked):  # type: ignore[arg-type]
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny_open)
    monkeypatch.setattr(os, "access", deny_access)
    with pytest.raises(InputFileError) as caught:
        open_input(locked)
    assert str(caught.value) == f"{locked}: permission denied"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: demo\nbase_model: m\ndataset: train.jsonl\ntargets:\n  - provider: local\n"
    )
    with pytest.raises(SpecError) as failed:
        load_spec(spec, require_files=True)
    assert str(failed.value) == f"{spec}:3 dataset: train.jsonl: permission denied"
