"""The append-only, hash-chained audit log.

Each entry's hash is ``sha256(prev_hash + "\\n" + canonical JSON of its fields)``, and
``audit_head`` holds the newest entry's sequence number and hash. Editing, deleting or
reordering an entry breaks the chain at that entry; cutting entries off the end no longer
matches the head. :func:`verify` reports each break. Appends lock the head row, so
concurrent writers (several processes, one PostgreSQL database) extend one chain.

Reading never trusts what is stored: :func:`entry_record` shows an entry whose ``detail``
is not JSON (or any field that is not text) as the raw text it holds, and :func:`verify`
reports such an entry as altered rather than failing.

The chain proves the journal's history was not altered *after the fact by someone who
cannot also rewrite every later hash*. To defend against an administrator of the database
itself, publish the head (``tunefleet audit verify --json`` prints it) somewhere they
cannot write, and compare later.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tunefleet.errors import printable
from tunefleet.state.models import AuditEntry, AuditHead

__all__ = [
    "AuditVerification",
    "append",
    "current_actor",
    "entry_hash",
    "entry_record",
    "printable",
    "verify",
]

GENESIS = "0" * 64


def current_actor() -> str:
    """``user@host`` of this process: who is acting, never how they authenticated."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: AuditEntry) -> str:
    """The hash ``entry`` must carry: sha256 of its ``prev_hash`` and its other fields."""
    fields = {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "run_id": entry.run_id,
        "target": entry.target,
        "detail": entry.detail,
    }
    return hashlib.sha256(f"{entry.prev_hash}\n{canonical_json(fields)}".encode()).hexdigest()


def append(
    session: Session,
    action: str,
    *,
    actor: str,
    run_id: str | None = None,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry in ``session``'s transaction, so it commits with the change it records."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    entry = AuditEntry(
        seq=head.seq + 1,
        at=datetime.now(UTC).isoformat(timespec="microseconds"),
        actor=actor,
        action=action,
        run_id=run_id,
        target=target,
        detail=canonical_json(dict(detail or {})),
        prev_hash=head.hash,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    return entry


def _stored(value: Any) -> Any:
    """A stored field as JSON can hold it: bytes (a BLOB written behind tunefleet's back)
    become text, anything else that is not a JSON scalar its str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def entry_record(entry: AuditEntry, *, parse_detail: bool = True) -> dict[str, Any]:
    """An entry as a JSON-ready mapping (what `tunefleet audit log --json` prints).

    ``detail`` is parsed from its stored JSON; where it is not JSON (an entry edited in
    the database, a truncated write) it stays the raw text it holds, so one bad entry never
    hides the others. With ``parse_detail=False`` it is always the raw text.
    """
    detail = _stored(entry.detail)
    if parse_detail and isinstance(detail, str):
        # Not JSON (or NaN, or nested beyond reason): shown as stored.
        with contextlib.suppress(ValueError, RecursionError):
            detail = json.loads(detail, parse_constant=_refuse_constant)
    return {
        "seq": _stored(entry.seq),
        "at": _stored(entry.at),
        "actor": _stored(entry.actor),
        "action": _stored(entry.action),
        "run": _stored(entry.run_id),
        "target": _stored(entry.target),
        "detail": detail,
        "hash": _stored(entry.hash),
    }


@dataclass
class AuditVerification:
    """What :func:`verify` found: entries checked, the head, and each break in the chain."""

    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> AuditVerification:
    """Walk the whole chain in order and report every entry that does not fit it."""
    result = AuditVerification()
    expected_prev, expected_seq = GENESIS, 1
    rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000)
    for entry in rows.scalars():
        result.entries += 1
        if entry.seq != expected_seq:
            result.problems.append(
                f"entry {expected_seq}"
                + (f"-{entry.seq - 1}" if entry.seq - 1 > expected_seq else "")
                + " missing (deleted?)"
            )
        if entry.prev_hash != expected_prev:
            result.problems.append(f"entry {entry.seq}: does not follow the entry before it")
        try:
            intact = entry_hash(entry) == entry.hash
        except (TypeError, ValueError):  # a field holds what tunefleet never writes (a BLOB)
            intact = False
        if not intact:
            action = printable(_stored(entry.action))
            result.problems.append(f"entry {entry.seq} ({action}): contents were altered")
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    head = session.get(AuditHead, 1)
    if head is None:
        result.problems.append("the chain's head record is missing")
        return result
    result.head_seq, result.head_hash = head.seq, head.hash
    if (head.seq, head.hash) != (expected_seq - 1, expected_prev):
        result.problems.append(
            f"the head says the chain ends at entry {head.seq}, but it ends at "
            f"{expected_seq - 1} (entries cut off the end, or the head edited)"
        )
    return result
