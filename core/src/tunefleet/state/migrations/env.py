"""Alembic environment for the journal.

tunefleet runs migrations itself when it opens a journal (:func:`tunefleet.state.open_journal`),
passing the connection it holds in ``config.attributes["connection"]``; the caller has
already taken the lock that keeps two processes from migrating at once.
"""

from __future__ import annotations

from alembic import context

from tunefleet.state.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
