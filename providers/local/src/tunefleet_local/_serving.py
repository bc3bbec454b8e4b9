"""Serving: one model-server process (``python -m tunefleet_local._server``) per endpoint.

::

    <workdir>/endpoints/
        <name>.json     the endpoint's record: name, pid and start time, URL, what it serves
        <name>.ready    written by the server once the model is loaded and the port bound
        <name>.log      what the server printed
        .lock           held while an endpoint starts or stops

An endpoint's id is its record's path, so ``delete_endpoint`` and ``invoke`` need nothing
but the ref. The servers run in sessions of their own, so they outlive the CLI that
deployed them, until ``delete_endpoint`` stops them.

Crash-safe: ``deploy`` writes the record (its intent, without a pid) before it starts a
server and adds the pid the moment the server exists; and a server's command line names
its ``.ready`` file, so one whose record a kill kept from being written is still found (in
``/proc``) and stopped by the next ``deploy`` or ``delete_endpoint`` of that name. No
server runs that nothing knows of, and a name never has two.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunefleet.errors import ProviderError
from tunefleet.kit.files import locked, read_json, write_json
from tunefleet.kit.processes import is_alive, start_time
from tunefleet.names import NAME_PATTERN
from tunefleet.provider import ArtifactRef, ChatReply, ChatRequest, EndpointRef, Plan
from tunefleet_local import _client
from tunefleet_local._jobs import local_path
from tunefleet_local.options import workdir
from tunefleet_trainer.predictions import read_progress_line

__all__ = [
    "ANSWERER",
    "SERVER",
    "SERVER_START_TIMEOUT",
    "answer",
    "delete_endpoint",
    "deploy",
    "invoke",
]

ANSWERER = "tunefleet_trainer.answer"
"""The module ``answer`` runs (``python -m``) to answer a batch without an endpoint."""
SERVER = "tunefleet_local._server"
"""The module ``deploy`` runs (``python -m``) to serve a model."""
SERVER_START_TIMEOUT = 180.0
"""Seconds a server may take to load its model and bind its port."""
STOP_TIMEOUT = 10.0
"""Seconds a server has to exit on SIGTERM before it is killed."""
_FOLDER = "endpoints"


def _record_path(provider: str, root: Path, name: str) -> Path:
    if not re.fullmatch(NAME_PATTERN, name):
        raise ProviderError(
            provider, f"endpoint name {name!r} is not a valid resource name", code="invalid_name"
        )
    folder = root / _FOLDER
    folder.mkdir(exist_ok=True)
    return folder / f"{name}.json"


def _ref(provider: str, record: Mapping[str, Any], record_path: Path) -> EndpointRef:
    return EndpointRef(
        provider=provider, name=record["name"], url=record["url"], id=str(record_path)
    )


def _alive(record: Mapping[str, Any]) -> bool:
    return record.get("pid") is not None and is_alive(record["pid"], record.get("start_time"))


def _strays(ready: Path) -> list[int]:
    """Pids of live servers started for the record beside ``ready`` (their command line
    names it), whether or not the record knows them."""
    wanted = str(ready).encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--ready-file" in words and wanted in words and is_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _stop(record: Mapping[str, Any] | None, record_path: Path) -> None:
    """Stop the record's server and any other server started for its name: SIGTERM to each
    group, SIGKILL to what outlasts STOP_TIMEOUT."""
    pids = set(_strays(record_path.with_suffix(".ready")))
    if record is not None and _alive(record):
        pids.add(record["pid"])
    for signum in (signal.SIGTERM, signal.SIGKILL):
        pids = {pid for pid in pids if is_alive(pid)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signum)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def _start(provider: str, record: dict[str, Any], record_path: Path) -> dict[str, Any]:
    """Start a server for ``record`` (name, model_dir, artifact: the intent, already on
    disk) and wait until it answers; the record, with pid and URL, written at each step."""
    ready = record_path.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    log = record_path.with_suffix(".log")
    command = [
        sys.executable,
        "-m",
        SERVER,
        "--model-dir",
        record["model_dir"],
        "--name",
        record["name"],
        "--ready-file",
        str(ready),
    ]
    with log.open("ab") as output:  # the child keeps its own descriptor
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the CLI; delete_endpoint signals its group
        )
    record = {**record, "pid": server.pid, "start_time": start_time(server.pid)}
    write_json(record_path, record)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not ready.exists():  # written atomically: once there, it is whole
        if server.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise ProviderError(
                provider,
                f"the model server exited: {tail[0] if tail else 'no output'} (see {log})",
                code="server_exited",
            )
        if time.monotonic() > deadline:
            server.kill()
            server.wait()
            raise ProviderError(
                provider,
                f"the model server did not start in {SERVER_START_TIMEOUT:.0f}s (see {log})",
                code="server_start_timeout",
            )
        time.sleep(0.1)
    record = {**record, "url": json.loads(ready.read_text())["url"]}
    write_json(record_path, record)
    return record


def deploy(provider: str, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
    """Serve ``artifact`` (a local training output's adapter or model) as ``name``.

    Returns once the server answers. The same model under the same name reuses the running
    server; another model replaces it, and so does a server a killed deploy left half
    started. ProviderError ``not_a_training_output`` for an artifact that is not in a local
    training output, ``server_exited`` or ``server_start_timeout`` when the server does not
    come up.
    """
    root = workdir(plan.options)
    record_path = _record_path(provider, root, name)
    model_dir = local_path(provider, artifact.uri).parent
    if not (model_dir / "manifest.json").is_file():
        raise ProviderError(
            provider, f"{artifact.uri} is not a local training output", code="not_a_training_output"
        )
    # Deploys and deletes of one work directory take turns, so two deploys of one name
    # cannot both start a server (the loser's would run on, unrecorded).
    with locked(record_path.parent):
        record = read_json(record_path)
        if (
            record is not None
            and record.get("url")
            and record["model_dir"] == str(model_dir)
            and _alive(record)
            and not set(_strays(record_path.with_suffix(".ready"))) - {record["pid"]}
        ):
            return _ref(provider, record, record_path)
        _stop(record, record_path)
        # The intent first: a kill from here on leaves a record naming the server's files.
        intent = {"name": name, "model_dir": str(model_dir), "artifact": artifact.uri}
        write_json(record_path, intent)
        try:
            record = _start(provider, intent, record_path)
        except ProviderError:  # it never served: nothing of it is left behind
            _stop(read_json(record_path), record_path)
            for leftover in (record_path, record_path.with_suffix(".ready")):
                leftover.unlink(missing_ok=True)
            raise
    return _ref(provider, record, record_path)


def delete_endpoint(provider: str, endpoint: EndpointRef) -> None:
    """Stop the endpoint's server and remove its record; a no-op when it is gone already
    or its name now serves a newer deployment (the record's URL differs)."""
    if endpoint.id is None:
        raise ProviderError(
            provider, f"endpoint {endpoint.name} has no record path", code="not_local"
        )
    record_path = Path(endpoint.id)
    if record_path.suffix != ".json" or record_path.parent.name != _FOLDER:
        raise ProviderError(
            provider, f"{endpoint.id} is not a local endpoint record", code="not_local"
        )
    if not record_path.parent.is_dir():
        return  # the work directory is gone, and every endpoint in it
    with locked(record_path.parent):
        record = read_json(record_path)
        if record is not None and record.get("url") not in (None, endpoint.url):
            return  # the name serves a newer deployment now
        _stop(record, record_path)
        for leftover in (record_path, record_path.with_suffix(".ready")):
            leftover.unlink(missing_ok=True)


def invoke(provider: str, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
    """Ask the model behind ``endpoint`` (see :mod:`tunefleet_local._client` for errors)."""
    return _client.chat(provider, endpoint, request)


def answer(
    provider: str,
    options: Mapping[str, Any],
    model: str,
    requests: Sequence[ChatRequest],
    progress: Callable[[int, int], None] | None = None,
) -> list[ChatReply]:
    """``model`` answers ``requests`` in one ``python -m tunefleet_trainer.answer`` process
    (the model loads once), without an endpoint.

    ``model`` is a local training output's artifact URI or a base model the trainer can
    load offline (a local directory, a hub id in the cache). ProviderError
    ``model_unavailable`` for a ``scratch:`` model (it exists only inside its run) and
    ``answer_failed`` with the process's last line when it fails.
    """
    if model.startswith("scratch:"):
        raise ProviderError(
            provider,
            f"{model} is built inside its training run and cannot answer outside it",
            code="model_unavailable",
        )
    if model.startswith("file:"):
        model = str(local_path(provider, model).parent)  # the training output directory
    folder = workdir(options) / "answers"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        asked, answered = Path(scratch) / "requests.jsonl", Path(scratch) / "replies.jsonl"
        asked.write_text(
            "".join(request.model_dump_json() + "\n" for request in requests), encoding="utf-8"
        )
        command = [
            sys.executable,
            "-m",
            ANSWERER,
            "--model",
            model,
            "--requests",
            str(asked),
            "--output",
            str(answered),
        ]
        last = ""
        with subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                found = read_progress_line(line)
                if found is not None and progress is not None:
                    progress(found["done"], found["total"])
                elif line.strip():
                    last = line.strip()
        if process.returncode != 0:
            raise ProviderError(
                provider,
                f"answering with {model} failed: {last or f'exit {process.returncode}'}",
                code="answer_failed",
            )
        replies = [
            ChatReply.model_validate_json(line)
            for line in answered.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    if len(replies) != len(requests):
        raise ProviderError(
            provider,
            f"answering with {model} gave {len(replies)} replies to {len(requests)} requests",
            code="answer_failed",
        )
    return replies
