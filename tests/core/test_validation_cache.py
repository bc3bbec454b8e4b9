"""Validation reports reused by content: a reattach or a re-plan of unchanged data validates
nothing, and any edit, setting or check that could change the report validates again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tunefleet.data import cache, reuse_reports, validate_dataset
from tunefleet.data.findings import Finding
from tunefleet.hookspecs import hookimpl
from tunefleet.plugins import Registry, builtin_plugins

SEEN: list[int] = []
"""Lines the counting check was shown: empty when a report came from the cache."""


def counting_check(example: Mapping[str, Any], line: int) -> Iterable[Finding]:
    SEEN.append(line)
    return ()


class CountingPlugin:
    @hookimpl
    def tunefleet_dataset_checks(self) -> list[Any]:
        return [counting_check]


@pytest.fixture
def registry() -> Registry:
    return Registry([*builtin_plugins(), (CountingPlugin(), "counting", "tests", None)])


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path / "cache"))
    SEEN.clear()


def _write(path: Path, answers: list[str]) -> Path:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Question {i}?"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
        for i, answer in enumerate(answers)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _settle(path: Path) -> None:
    """Make ``path`` look as if it was last changed long ago, as a dataset usually was.
    The change time cannot be set, so the racy window is what the test moves."""
    os.utime(path, (1_600_000_000, 1_600_000_000))


def _validate(path: Path, registry: Registry, **options: Any) -> Any:
    return validate_dataset(path, registry=registry, jobs=1, cache=True, **options)


def test_unchanged_content_is_validated_once_and_reported_the_same(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # this file was written a moment ago
    data = _write(tmp_path / "train.jsonl", ["Paris.", "Berlin.", "Rome."])
    first = _validate(data, registry)
    assert SEEN == [1, 2, 3]
    again = _validate(data, registry)
    assert SEEN == [1, 2, 3], "the second validation read the stored report"
    assert again.model_dump(exclude={"elapsed_seconds"}) == first.model_dump(
        exclude={"elapsed_seconds"}
    )
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(data.read_bytes())
    moved = _validate(copy, registry)
    assert SEEN == [1, 2, 3], "the same content elsewhere is the same report"
    assert moved.path == str(copy) and moved.sha256 == first.sha256


def test_an_edit_is_noticed_even_with_the_same_size_and_modification_time(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)
    data = _write(tmp_path / "train.jsonl", ["Paris.", "Berlin."])
    _settle(data)
    first = _validate(data, registry)
    _write(data, ["Paris.", "Berlim."])  # same size
    _settle(data)  # and the same modification time: only the change time moved
    edited = _validate(data, registry)
    assert SEEN == [1, 2, 1, 2]
    assert edited.sha256 != first.sha256


def test_a_file_changed_within_the_racy_window_is_hashed_not_trusted(
    tmp_path: Path, registry: Registry
) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    _validate(data, registry)
    assert not list((tmp_path / "cache" / "validation").glob("files/*.json")), (
        "the identity of a file changed just now is not remembered"
    )
    _validate(data, registry)
    assert SEEN == [1], "its report is still found, by reading its sha256"


@pytest.mark.parametrize(
    "changed",
    [{"model": "gpt-4"}, {"max_tokens": 16}, {"max_per_code": 1}, {"data_format": "preference"}],
)
def test_a_setting_that_changes_the_report_validates_again(
    tmp_path: Path, registry: Registry, changed: dict[str, Any]
) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    _validate(data, registry)
    options = {("context_limit" if k == "max_tokens" else k): v for k, v in changed.items()}
    _validate(data, registry, **options)
    assert SEEN == [1, 1]


def test_another_set_of_checks_validates_again(tmp_path: Path, registry: Registry) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    _validate(data, Registry(builtin_plugins()))
    _validate(data, registry)
    assert SEEN == [1], "the report without the counting check is not reused with it"


def test_forcing_validates_and_refreshes_the_stored_report(
    tmp_path: Path, registry: Registry
) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    _validate(data, registry)
    validate_dataset(data, registry=registry, jobs=1, cache=False)
    assert SEEN == [1, 1]
    _validate(data, registry)
    assert SEEN == [1, 1]


def test_a_damaged_entry_is_a_miss_and_is_replaced(tmp_path: Path, registry: Registry) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    first = _validate(data, registry)
    (entry,) = (tmp_path / "cache" / "validation" / "reports").glob("*/*.json")
    entry.write_text('{"report": {"path": 3}}')
    again = _validate(data, registry)
    assert SEEN == [1, 1] and again.sha256 == first.sha256
    _validate(data, registry)
    assert SEEN == [1, 1]


def test_the_api_uses_no_disk_cache_unless_asked(tmp_path: Path, registry: Registry) -> None:
    data = _write(tmp_path / "train.jsonl", ["Paris."])
    validate_dataset(data, registry=registry, jobs=1)
    validate_dataset(data, registry=registry, jobs=1)
    assert SEEN == [1, 1]
    assert not (tmp_path / "cache" / "validation").exists()
    with reuse_reports(on_disk=True):
        validate_dataset(data, registry=registry, jobs=1)
    with reuse_reports(on_disk=True):
        validate_dataset(data, registry=registry, jobs=1)
    assert SEEN == [1, 1, 1], "a later process's plan reuses what the first one stored"


def test_the_cache_is_private_to_the_user(tmp_path: Path, registry: Registry) -> None:
    """Findings quote the data, so the stored reports are the user's alone."""
    data = _write(tmp_path / "train.jsonl", ["Call me at +1 415 555 0100."])
    _validate(data, registry)
    (entry,) = (tmp_path / "cache" / "validation" / "reports").glob("*/*.json")
    assert entry.stat().st_mode & 0o077 == 0
    assert entry.parent.stat().st_mode & 0o077 == 0


def test_a_fifo_is_refused_as_before_not_waited_on(tmp_path: Path, registry: Registry) -> None:
    from tunefleet.errors import InputFileError

    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="FIFO"):
        _validate(fifo, registry)


def _data_validate(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tunefleet", "data", "validate", *args, "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_data_validate_reuses_and_no_cache_forces(tmp_path: Path) -> None:
    """The autouse fixture points the CLI's cache (inherited environment) at tmp_path."""
    data = _write(tmp_path / "train.jsonl", ["Paris.", "Berlin."])
    reports = [_data_validate(str(data)) for _ in range(2)]
    reports.append(_data_validate(str(data), "--no-cache"))
    for report in reports:
        report.pop("elapsed_seconds")
    assert reports[0] == reports[1] == reports[2]
    assert list((tmp_path / "cache" / "validation").glob("reports/*/*.json"))


_SERVER_AFTER_VALIDATION = """
import sys
from multiprocessing import forkserver
from tunefleet.data import validate_dataset
if __name__ == "__main__":  # workers import this module again
    validate_dataset(sys.argv[1], jobs=2, cache=True)
    print(forkserver._forkserver._forkserver_pid is not None)
"""


def _starts_a_fork_server(data: Path, tmp_path: Path) -> bool:
    """Whether validating ``data`` with two workers in a fresh interpreter started the
    workers' fork server (run from a file: workers cannot start for code piped to python)."""
    script = tmp_path / "validate_twice.py"
    script.write_text(_SERVER_AFTER_VALIDATION)
    done = subprocess.run(
        [sys.executable, str(script), str(data)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip() == "True"


@pytest.mark.skipif(sys.platform == "win32", reason="no fork server on Windows")
def test_workers_start_early_for_new_data_and_not_for_cached_data(tmp_path: Path) -> None:
    """The worker pool's fork server is started before validation's setup when the data is
    new, and not at all when the cache answers (a reattach starts no processes)."""
    data = _write(tmp_path / "train.jsonl", ["Paris.", "Berlin."])
    time.sleep(cache.RACY_SECONDS + 0.2)  # past the racy window: its sha256 is remembered
    assert _starts_a_fork_server(data, tmp_path)
    assert not _starts_a_fork_server(data, tmp_path)  # the report comes from the cache
    _write(data, ["Paris.", "Rome."])
    assert _starts_a_fork_server(data, tmp_path)
