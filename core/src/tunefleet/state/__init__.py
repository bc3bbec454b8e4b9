"""The journal: a real database of runs, targets, cloud resources, events and the audit log.

SQLite by default (one file in the user state directory), PostgreSQL for teams, through
the same SQLAlchemy models and Alembic migrations. Open it with :func:`open_journal`.
"""

from __future__ import annotations

from tunefleet.state.audit import AuditVerification
from tunefleet.state.database import default_state_url, display_url, resolve_state_url
from tunefleet.state.journal import LEASE_TTL, Journal, Owner, open_journal

__all__ = [
    "LEASE_TTL",
    "AuditVerification",
    "Journal",
    "Owner",
    "default_state_url",
    "display_url",
    "open_journal",
    "resolve_state_url",
]
