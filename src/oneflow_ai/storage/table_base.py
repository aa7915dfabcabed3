"""The base of OneFlow's table definitions: the declarative `Base` with its constraint naming
convention, the UTC timestamp type, and the integer id column shared by the tables of
`storage/tables.py` and `storage/tables_usage.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    Table,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase

__all__ = [
    "ADMIN_PROJECT_ID",
    "ID",
    "Base",
    "UtcDateTime",
    "table_of",
    "utcnow",
]

ADMIN_PROJECT_ID = "proj_admin"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no zone: UTC is implied)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: OneFlow stores aware UTC datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime}


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class (typed, for Core statements)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY autoincrements on SQLite
