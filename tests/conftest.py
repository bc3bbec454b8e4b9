"""Fixtures shared by every test tree."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunefleet.plugins import Registry, builtin_plugins
from tunefleet.testing import fake

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokenizer files are seeded into a per-session cache, never the user's.
    monkeypatch.setenv("TUNEFLEET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def toy_dataset() -> Path:
    return DATA / "toy_chat_fine_tuning.jsonl"


@pytest.fixture
def registry() -> Registry:
    """Built-in plugins plus the fake providers, registered in-process."""
    return Registry([*builtin_plugins(), (fake, "fake", "tunefleet-fake-tests", "0.0.0")])


@pytest.fixture
def fake_site(tmp_path: Path) -> Iterator[Path]:
    """A site directory on sys.path where tests write throwaway distributions."""
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))


# ---------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback for the session; yields its base URL.

    initdb refuses to run as root, so under root the cluster belongs to the `postgres`
    (or `nobody`) user, in a directory of its own under /tmp.
    """
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="tunefleet-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            user = name
            os.chown(root, entry.pw_uid, entry.pw_gid)
            break
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def pg(*args: str) -> None:
        subprocess.run(
            [str(bindir / args[0]), *args[1:]], user=user, check=True, capture_output=True
        )

    pg("initdb", "-D", str(data), "-A", "trust", "-U", "tunefleet", "-E", "UTF8", "--no-sync")
    pg(
        "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60",
        "-o", f"-h 127.0.0.1 -p {port} -k {root} -F -c max_connections=200",
        "start",
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://tunefleet@127.0.0.1:{port}"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str) -> str:
    """A new empty database on ``server``; returns its URL."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty journal database: SQLite in tmp_path, or PostgreSQL on loopback."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    return create_database(request.getfixturevalue("postgres_server"))
