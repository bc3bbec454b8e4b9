"""Serving: one model-server process (``python -m tunefleet_local._server``) per endpoint,
serving one or more versions of its model side by side.

::

    <workdir>/endpoints/
        <name>.json     the endpoint's record: name, pid and start time, URL, and the
                        versions it serves with their weights (the server's table)
        <name>.ready    written by the server once its models are loaded and the port bound
        <name>.log      what the server printed (each version it loads and drops)
        .lock           held while a record changes, and while a server starts or stops

An endpoint's id is its record's path, so every call needs nothing but the ref. The
servers run in sessions of their own, so they outlive the CLI that deployed them, until
``delete_endpoint`` stops them.

Versions (:class:`~tunefleet.provider.TrafficSplitting`). The record is the one source of
truth for what an endpoint serves::

    {"name": "support", "pid": 4242, "start_time": 9876, "url": "http://127.0.0.1:PORT/v1",
     "revision": 2,
     "versions": {"primary":    {"model_dir": ..., "artifact": ..., "weight": 90, "added": 0},
                  "support-v2": {"model_dir": ..., "artifact": ..., "weight": 10, "added": 1}}}

A plain ``deploy`` serves its model as version :data:`DEPLOYED_VERSION`. The server reads
the record as its table of versions (``--routes``) and watches it: it loads versions that
appear (in the background, the others answering meanwhile), applies new weights, drops
versions that go. Every change bumps ``revision`` and the server reports the revision it
applied (``GET /versions``), so ``add_version``, ``shift_traffic`` and ``remove_version``
write the record under the lock and then wait until the server has done it. They never
start or stop a process: a kill inside one leaves at most a record the server follows
anyway and the next call finds done (or finishes waiting for).

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

from tunefleet.errors import (
    AlreadyExistsError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.kit.files import locked, read_json, write_json
from tunefleet.kit.processes import is_alive, start_time
from tunefleet.names import NAME_PATTERN
from tunefleet.provider import ArtifactRef, ChatReply, ChatRequest, EndpointRef, Plan
from tunefleet_local._jobs import local_path
from tunefleet_local.options import workdir
from tunefleet_trainer.predictions import read_progress_line

# The functions that call the model server import tunefleet_local._client themselves: it
# loads http.client and ssl (about 10 ms), which planning a local run never needs.

__all__ = [
    "ALARM_ERROR_RATE",
    "ALARM_MIN_ERRORS",
    "ANSWERER",
    "APPLY_TIMEOUT",
    "DEPLOYED_VERSION",
    "SERVER",
    "SERVER_START_TIMEOUT",
    "VERSION_PATTERN",
    "add_version",
    "alarms",
    "answer",
    "delete_endpoint",
    "deploy",
    "invoke",
    "invoke_version",
    "remove_version",
    "shift_traffic",
    "versions",
]

ANSWERER = "tunefleet_trainer.answer"
"""The module ``answer`` runs (``python -m``) to answer a batch without an endpoint."""
SERVER = "tunefleet_local._server"
"""The module ``deploy`` runs (``python -m``) to serve a model."""
SERVER_START_TIMEOUT = 180.0
"""Seconds a server may take to load its model and bind its port."""
STOP_TIMEOUT = 10.0
"""Seconds a server has to exit on SIGTERM before it is killed."""
DEPLOYED_VERSION = "primary"
"""The version label of the model a plain ``deploy`` serves."""
VERSION_PATTERN = r"^[A-Za-z0-9-]{1,40}$"
"""A version label: letters, digits and hyphens, at most 40 (the contract's rule)."""
APPLY_TIMEOUT = 30.0
"""Seconds the server may take to apply new weights or drop a version (it looks at its
record ten times a second)."""
ALARM_MIN_ERRORS = 3
"""A version's error alarm needs at least this many failed requests among its last ones..."""
ALARM_ERROR_RATE = 0.05
"""...and more than this share of them failed."""
_POLL = 0.05
_FOLDER = "endpoints"


def _record_path(provider: str, root: Path, name: str) -> Path:
    if not re.fullmatch(NAME_PATTERN, name):
        raise ProviderError(
            provider, f"endpoint name {name!r} is not a valid resource name", code="invalid_name"
        )
    folder = root / _FOLDER
    folder.mkdir(exist_ok=True)
    return folder / f"{name}.json"


def _endpoint_record(provider: str, endpoint: EndpointRef) -> Path:
    """The record path an endpoint ref names; ProviderError ``not_local`` for another."""
    if endpoint.id is None:
        raise ProviderError(
            provider, f"endpoint {endpoint.name} has no record path", code="not_local"
        )
    record_path = Path(endpoint.id)
    if record_path.suffix != ".json" or record_path.parent.name != _FOLDER:
        raise ProviderError(
            provider, f"{endpoint.id} is not a local endpoint record", code="not_local"
        )
    return record_path


def _model_dir(provider: str, artifact: ArtifactRef) -> Path:
    """The training output directory ``artifact`` belongs to (the server loads it whole)."""
    model_dir = local_path(provider, artifact.uri).parent
    if not (model_dir / "manifest.json").is_file():
        raise ProviderError(
            provider, f"{artifact.uri} is not a local training output", code="not_a_training_output"
        )
    return model_dir


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
    """Start a server for ``record`` (name and versions: the intent, already on disk, which
    the server reads as its table) and wait until it answers; the record, with pid and
    URL, written at each step."""
    ready = record_path.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    log = record_path.with_suffix(".log")
    command = [
        sys.executable,
        "-m",
        SERVER,
        "--routes",
        str(record_path),
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


def _serves_only(record: Mapping[str, Any], model_dir: Path) -> bool:
    """Whether ``record`` is a current one whose one version is ``model_dir``'s model."""
    table = record.get("versions")
    return (
        isinstance(table, dict)
        and len(table) == 1
        and next(iter(table.values()))["model_dir"] == str(model_dir)
    )


def deploy(provider: str, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
    """Serve ``artifact`` (a local training output's adapter or model) as ``name``, as the
    endpoint's one version, :data:`DEPLOYED_VERSION`.

    Returns once the server answers. An endpoint of that name that serves this model alone
    (under any label: a canary that completed) is reused as it is; anything else -- another
    model, several versions, a server a killed deploy left half started -- is replaced by
    a new server (on a new port, so refs to the old one no longer reach it). ProviderError
    ``not_a_training_output`` for an artifact that is not in a local training output,
    ``server_exited`` or ``server_start_timeout`` when the server does not come up.
    """
    root = workdir(plan.options)
    record_path = _record_path(provider, root, name)
    model_dir = _model_dir(provider, artifact)
    # Deploys and deletes of one work directory take turns, so two deploys of one name
    # cannot both start a server (the loser's would run on, unrecorded).
    with locked(record_path.parent):
        record = read_json(record_path)
        if (
            record is not None
            and record.get("url")
            and _serves_only(record, model_dir)
            and _alive(record)
            and not set(_strays(record_path.with_suffix(".ready"))) - {record["pid"]}
        ):
            return _ref(provider, record, record_path)
        _stop(record, record_path)
        # The intent first: a kill from here on leaves a record naming the server's files.
        intent = {
            "name": name,
            "revision": 0,
            "versions": {
                DEPLOYED_VERSION: {
                    "model_dir": str(model_dir),
                    "artifact": artifact.uri,
                    "weight": 100,
                    "added": 0,
                }
            },
        }
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
    """Stop the endpoint's server (every version it serves) and remove its record; a no-op
    when it is gone already or its name now serves a newer deployment (the record's URL
    differs)."""
    record_path = _endpoint_record(provider, endpoint)
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
    """Ask the model behind ``endpoint``: the version its weights pick (see
    :mod:`tunefleet_local._client` for errors)."""
    from tunefleet_local import _client

    return _client.chat(provider, endpoint, request)


# --------------------------------------------------------------------------- versions


def _check_version(provider: str, version: str) -> None:
    if not re.fullmatch(VERSION_PATTERN, version):
        raise ProviderError(
            provider,
            f"version {version!r} is not a version label (letters, digits and hyphens, "
            "1-40 characters)",
            code="invalid_version",
        )


def _current(provider: str, endpoint: EndpointRef, record_path: Path) -> dict[str, Any]:
    """The record of the deployment ``endpoint`` refers to. ProviderNotFoundError
    ``endpoint_not_found`` when it was deleted or its name serves a newer deployment;
    ProviderError ``endpoint_outdated`` for a server that predates versions."""
    record = read_json(record_path) if record_path.parent.is_dir() else None
    if record is None or record.get("url") is None or record["url"] != endpoint.url:
        raise ProviderNotFoundError(
            provider,
            f"endpoint {endpoint.name} at {endpoint.url} is not deployed (any more)",
            code="endpoint_not_found",
        )
    if not isinstance(record.get("versions"), dict):
        raise ProviderError(
            provider,
            f"endpoint {endpoint.name} was deployed by an earlier tunefleet-local that serves "
            "one model; deploy it again",
            code="endpoint_outdated",
        )
    return record


def _changed(
    record_path: Path, record: Mapping[str, Any], versions: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``record`` with ``versions`` as the next revision; the record written."""
    record = {**record, "revision": int(record.get("revision", 0)) + 1, "versions": versions}
    write_json(record_path, record)
    return record


def _serving(
    report: Mapping[str, Any], label: str, entry: Mapping[str, Any]
) -> dict[str, Any] | None:
    """What the server reports of version ``label`` if it is the record's ``entry``."""
    found = report["versions"].get(label)
    if isinstance(found, dict) and (found.get("model_dir"), found.get("added")) == (
        entry["model_dir"],
        entry["added"],
    ):
        return found
    return None


def _await(
    provider: str,
    endpoint: EndpointRef,
    revision: int,
    done: Callable[[Mapping[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll the server until it has applied ``revision`` of its table and ``done`` holds
    for its report; TransientProviderError ``version_timeout`` after ``timeout`` seconds
    (the server goes on; calling again waits again)."""
    from tunefleet_local import _client

    deadline = time.monotonic() + timeout
    while True:
        report = _client.versions(provider, endpoint)
        if int(report.get("revision", -1)) >= revision and done(report):
            return report
        if time.monotonic() > deadline:
            raise TransientProviderError(
                provider,
                f"endpoint {endpoint.name} did not {what} in {timeout:.0f}s "
                f"(see {Path(endpoint.id or '').with_suffix('.log')})",
                code="version_timeout",
            )
        time.sleep(_POLL)


def add_version(
    provider: str, endpoint: EndpointRef, artifact: ArtifactRef, version: str
) -> EndpointRef:
    """Serve ``artifact`` on ``endpoint`` as ``version`` with weight 0; returns once the
    server has loaded it. The same version with the same model again: nothing changes (it
    waits for the load a killed call started).

    AlreadyExistsError ``version_exists`` when ``version`` serves another model;
    ProviderError ``version_load_failed`` (the version is dropped again) when the server
    cannot load it, ``invalid_version`` for a bad label, ``not_a_training_output``;
    TransientProviderError ``version_timeout`` when it takes over SERVER_START_TIMEOUT;
    ProviderNotFoundError ``endpoint_not_found`` / ``endpoint_not_running``.
    """
    _check_version(provider, version)
    model_dir = _model_dir(provider, artifact)
    record_path = _endpoint_record(provider, endpoint)
    with locked(record_path.parent):
        record = _current(provider, endpoint, record_path)
        table = record["versions"]
        entry = table.get(version)
        if entry is not None and entry["model_dir"] != str(model_dir):
            raise AlreadyExistsError(
                provider,
                f"endpoint {endpoint.name} serves another model as version {version} "
                f"({entry['artifact']})",
                code="version_exists",
            )
        if entry is None:
            if not _alive(record):
                raise _not_running(provider, endpoint)
            entry = {
                "model_dir": str(model_dir),
                "artifact": artifact.uri,
                "weight": 0,
                "added": int(record.get("revision", 0)) + 1,
            }
            record = _changed(record_path, record, {**table, version: entry})

    def loaded(report: Mapping[str, Any]) -> bool:
        found = _serving(report, version, entry)
        if found is None:  # the table the server applied no longer holds it
            raise ProviderNotFoundError(
                provider,
                f"version {version} of endpoint {endpoint.name} was removed while it loaded",
                code="version_not_found",
            )
        return bool(found["state"] != "loading")

    report = _await(
        provider, endpoint, entry["added"], loaded, SERVER_START_TIMEOUT, f"load {version}"
    )
    found = _serving(report, version, entry)
    assert found is not None  # loaded() saw it
    if found["state"] == "failed":
        with locked(record_path.parent):  # it never served: nothing of it is left behind
            record = _current(provider, endpoint, record_path)
            if record["versions"].get(version) == entry:
                rest = {k: v for k, v in record["versions"].items() if k != version}
                _changed(record_path, record, rest)
        raise ProviderError(
            provider,
            f"endpoint {endpoint.name} cannot load version {version}: {found['error']}",
            code="version_load_failed",
        )
    return _ref(provider, record, record_path)


def _not_running(provider: str, endpoint: EndpointRef) -> ProviderNotFoundError:
    return ProviderNotFoundError(
        provider,
        f"endpoint {endpoint.name}'s server is not running; deploy it again",
        code="endpoint_not_running",
    )


def versions(provider: str, endpoint: EndpointRef) -> dict[str, int]:
    """The versions the endpoint's record lists and each one's percent of the traffic."""
    record = _current(provider, endpoint, _endpoint_record(provider, endpoint))
    return {label: int(entry["weight"]) for label, entry in record["versions"].items()}


def shift_traffic(provider: str, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
    """Give each version its percent of the traffic (left out: 0); returns once the server
    routes by them. The weights in force again: nothing changes.

    ProviderNotFoundError ``version_not_found`` for a version the endpoint does not serve;
    ProviderError ``invalid_weights`` unless they are whole percents adding up to 100,
    ``version_not_loaded`` for traffic to a version the server cannot answer with.
    """
    from tunefleet_local import _client

    record_path = _endpoint_record(provider, endpoint)
    with locked(record_path.parent):
        record = _current(provider, endpoint, record_path)
        table = record["versions"]
        for label in weights:
            if label not in table:
                raise ProviderNotFoundError(
                    provider,
                    f"endpoint {endpoint.name} serves no version {label!r} "
                    f"(it serves {', '.join(table)})",
                    code="version_not_found",
                )
        shares = list(weights.values())
        if any(type(w) is not int or not 0 <= w <= 100 for w in shares) or sum(shares) != 100:
            raise ProviderError(
                provider,
                f"weights {dict(weights)} are not whole percents adding up to 100",
                code="invalid_weights",
            )
        wanted = {label: weights.get(label, 0) for label in table}
        if any(table[label]["weight"] != weight for label, weight in wanted.items()):
            report = _client.versions(provider, endpoint)
            for label, weight in wanted.items():
                found = _serving(report, label, table[label])
                if weight and (found is None or found["state"] != "loaded"):
                    raise ProviderError(
                        provider,
                        f"version {label} of endpoint {endpoint.name} is not loaded; "
                        "add it again before giving it traffic",
                        code="version_not_loaded",
                    )
            record = _changed(
                record_path,
                record,
                {label: {**entry, "weight": wanted[label]} for label, entry in table.items()},
            )
    _await(
        provider,
        endpoint,
        int(record["revision"]),
        lambda report: True,
        APPLY_TIMEOUT,
        "apply the new weights",
    )


def invoke_version(
    provider: str, endpoint: EndpointRef, version: str, request: ChatRequest
) -> ChatReply:
    """Ask ``version`` of the endpoint, whatever the weights. ProviderNotFoundError
    ``version_not_found`` (status 404) when the endpoint does not serve it,
    TransientProviderError ``version_not_loaded`` (503) while it loads."""
    from tunefleet_local import _client

    _check_version(provider, version)
    return _client.chat(provider, endpoint, request, version=version)


def remove_version(provider: str, endpoint: EndpointRef, version: str) -> None:
    """Stop serving ``version``; returns once the server has dropped it (and with it the
    model's memory). A version the endpoint does not serve: nothing to do.
    ProviderError ``version_has_traffic`` while it has a weight."""
    _check_version(provider, version)
    record_path = _endpoint_record(provider, endpoint)
    with locked(record_path.parent):
        record = _current(provider, endpoint, record_path)
        table = record["versions"]
        entry = table.get(version)
        if entry is not None:
            if entry["weight"]:
                raise ProviderError(
                    provider,
                    f"version {version} of endpoint {endpoint.name} has {entry['weight']}% "
                    "of the traffic; shift it to other versions first",
                    code="version_has_traffic",
                )
            rest = {label: e for label, e in table.items() if label != version}
            record = _changed(record_path, record, rest)
    if not _alive(record):
        return  # nothing serves it
    _await(
        provider,
        endpoint,
        int(record["revision"]),
        lambda report: version not in report["versions"],
        APPLY_TIMEOUT,
        f"drop {version}",
    )


def alarms(provider: str, endpoint: EndpointRef, version: str) -> list[str]:
    """The alarms firing for ``version`` now, one line each: it failed to load, or over
    its last requests (the server's :data:`~tunefleet_local._server.RECENT`) at least
    :data:`ALARM_MIN_ERRORS` failed and more than :data:`ALARM_ERROR_RATE` of them did.
    ProviderNotFoundError ``version_not_found`` when the endpoint does not serve it,
    ``endpoint_not_running`` when its server is gone."""
    from tunefleet_local import _client

    _check_version(provider, version)
    record = _current(provider, endpoint, _endpoint_record(provider, endpoint))
    entry = record["versions"].get(version)
    if entry is None:
        raise ProviderNotFoundError(
            provider,
            f"endpoint {endpoint.name} serves no version {version!r}",
            code="version_not_found",
        )
    found = _serving(_client.versions(provider, endpoint), version, entry)
    if found is None:
        return []  # the server has not taken it up yet: it has answered nothing
    if found["state"] == "failed":
        return [f"version {version} failed to load: {found['error']}"]
    errors, requests = int(found["recent_errors"]), int(found["recent_requests"])
    if errors >= ALARM_MIN_ERRORS and errors > ALARM_ERROR_RATE * requests:
        return [
            f"version {version}: {errors} of its last {requests} requests failed "
            f"({errors / requests:.0%}; the limit is {ALARM_ERROR_RATE:.0%} and "
            f"{ALARM_MIN_ERRORS} errors)"
        ]
    return []


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
