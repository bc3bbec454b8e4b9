"""Where the journal lives and how a connection to it is made and migrated.

The journal is SQLite by default, one file in the user state directory; ``--state URL`` or
``TUNEFLEET_STATE`` points it elsewhere, e.g. at a PostgreSQL database a team shares
(``postgresql://host/db``; the password comes from libpq's own chain: ``PGPASSWORD``,
``~/.pgpass``, or a service file, never the command line). URLs are shown with the password
masked, always.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import tenacity
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from tunefleet.errors import StateError

__all__ = ["SCHEMA_REVISION", "connect", "default_state_url", "display_url", "resolve_state_url"]

SCHEMA_REVISION = "0004"
"""The newest migration; a test keeps it equal to the migrations directory's head."""

STATE_ENV = "TUNEFLEET_STATE"
_MIGRATION_LOCK = 0x7475_6E65  # "tune": the PostgreSQL advisory lock held while migrating
_BUSY_TIMEOUT_MS = 30_000


def default_state_url() -> str:
    """SQLite in the user state directory (platformdirs), e.g. ``~/.local/state/tunefleet``."""
    from platformdirs import user_state_dir

    return f"sqlite:///{Path(user_state_dir('tunefleet')) / 'journal.db'}"


def resolve_state_url(url: str | None = None) -> str:
    """``url``, else ``$TUNEFLEET_STATE``, else :func:`default_state_url`."""
    return url or os.environ.get(STATE_ENV) or default_state_url()


def display_url(url: str | URL) -> str:
    """The URL with any password masked: the only form that may be printed or logged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def connect(url: str) -> Engine:
    """An engine on the journal at ``url``, migrated to :data:`SCHEMA_REVISION`.

    Raises StateError when the URL is malformed, the driver is missing, the database cannot
    be reached, or it was written by a newer tunefleet.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateError(f"state URL {display_url(url)!r} is not a database URL") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
    # One connection per target's driver thread, plus the heartbeat and the live view.
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 40}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        options = {"connect_args": {"timeout": _BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = " (pip install 'tunefleet[postgres]')" if "postgres" in parsed.drivername else ""
        raise StateError(f"no database driver for {display_url(parsed)}{hint}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    try:
        _migrate(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        raise StateError(f"cannot open the journal at {display_url(parsed)}: {reason}") from None
    return engine


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up
    # front; SQLAlchemy's documented recipe hands BEGIN to us. BEGIN IMMEDIATE makes each
    # transaction take the write lock when it starts, so two processes never both read a
    # state and then both act on it. WAL lets readers go on while one writes.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # Switching a new file to WAL needs an exclusive lock. While another process is
        # creating the same journal, SQLite answers "locked" at once instead of waiting
        # (it never waits where waiting could deadlock), so the switch is retried here.
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_locked),
            stop=tenacity.stop_after_delay(_BUSY_TIMEOUT_MS / 1000),
            wait=tenacity.wait_random(0.01, 0.1),
            reraise=True,
        ):
            with attempt:
                cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY) or "table is locked" (SQLITE_LOCKED),
    told by the error code (``sqlite_errorcode``, Python 3.11+), not by the message."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    primary = exc.sqlite_errorcode & 0xFF  # an extended code's low byte is its primary code
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _migrate(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = _current_revision(connection)
        if current == SCHEMA_REVISION:
            return  # the common case: no Alembic import at all
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.attributes["connection"] = connection
        known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            raise StateError(
                f"the journal at {display_url(engine.url)} has schema {current}, written by "
                "a newer tunefleet; upgrade tunefleet to use it"
            )
        command.upgrade(config, "head")


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
