"""The database: SQLAlchemy 2 async; SQLite by default, PostgreSQL through `DATABASE_URL`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, TypeDecorator, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every service's tables (one migration history for all)."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store UTC-aware timestamps only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def create_engine(database_url: str, *, ping_before_use: bool = False) -> AsyncEngine:
    """`ping_before_use`: each checkout first asks PostgreSQL if the connection is alive (three
    round trips), for a caller that cannot retry, such as a webhook answered once. Without it a
    connection PostgreSQL dropped (a restart) fails its first use and SQLAlchemy replaces the
    whole pool: a consumer retries in place, and the next operation gets fresh connections."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 5})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers run beside the writer; several services share the embedded file.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # Short waits: a request must fail fast (503) rather than outlive its client's patience.
    return create_async_engine(
        url, pool_pre_ping=ping_before_use, pool_size=10, max_overflow=10, pool_timeout=3,
        connect_args={"timeout": 3, "command_timeout": 10},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
