"""The statements a PostgreSQL connection executes, for tests that pin how many a batch takes.

`record_statements` records the first word of every statement asyncpg executes from then on
(``BEGIN`` and ``COMMIT`` are not statements here: asyncpg sends them as plain queries), the
way SQLAlchemy's cursor and `storage/direct_sql.py` both send them: as prepared statements.
"""

from __future__ import annotations

from typing import Any

import pytest
from asyncpg.prepared_stmt import PreparedStatement

__all__ = ["record_statements"]


def record_statements(monkeypatch: pytest.MonkeyPatch, into: list[str]) -> None:
    """Append the first word of each statement executed from now on to ``into`` (until
    ``monkeypatch`` is undone)."""
    fetch = PreparedStatement.fetch

    async def recording(self: PreparedStatement, *args: Any, **kwargs: Any) -> Any:
        into.append(self.get_query().split()[0])
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(PreparedStatement, "fetch", recording)
