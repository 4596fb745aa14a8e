"""Group commit: the rows of concurrent webhooks written with one INSERT and one commit
(`BatchInserter`, on a `Batcher`, which the pipeline also uses to stream and mark the published).

Alone, an insert costs a connection check-out, its ping and a transaction: about as much CPU as
the rest of a webhook. Shared by every row handed in while the previous write was in flight, it
costs little. Each caller still waits until its own row is committed, or gets its own row's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Row = dict[str, Any]
T = TypeVar("T")


def row_fault(exc: DBAPIError) -> bool:
    """A row's own fault, not the database's: its key is stored already (SQLSTATE class 23) or
    a value its column refuses (class 22). asyncpg's arrive as plain DBAPIError with their code."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return isinstance(exc, IntegrityError | DataError) or sqlstate[:2] in ("22", "23")


class Batcher(Generic[T]):
    """Whatever is handed in while a write is in flight is written together by the next one."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], name: str) -> None:
        self._write = write
        self._name = name
        self._waiting: list[T] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._waiting.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting(), name=self._name)

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write(batch)
        finally:
            self._writer = None

    async def flush(self) -> None:
        """Returns once everything handed in so far is written (a clean stop)."""
        if self._writer is not None:
            await self._writer


class BatchInserter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], table: Table) -> None:
        self.sessions = sessions
        self.table = table
        self._rows: Batcher[tuple[Row, asyncio.Future[None]]] = Batcher(self._write,
                                                                         "batch-insert")

    async def insert(self, row: Row) -> None:
        """Returns once `row` is committed; raises what inserting it alone would have raised."""
        future = asyncio.get_running_loop().create_future()
        self._rows.add((row, future))
        await future

    async def _write(self, batch: list[tuple[Row, asyncio.Future[None]]]) -> None:
        # A caller gone (past its deadline, answered 503) no longer wants its row written.
        batch = [(row, future) for row, future in batch if not future.done()]
        if not batch:
            return
        error: Exception | None = None
        try:
            async with self.sessions.begin() as session:
                await session.execute(self.table.insert(), [row for row, _ in batch])
        except DBAPIError as exc:
            if len(batch) > 1 and row_fault(exc):
                # One row's fault must not fail the others: find whose, row by row. Rare: Redis
                # claims keep duplicates out and validation keeps bad values out.
                for item in batch:
                    await self._write([item])
                return
            error = exc
        except Exception as exc:
            error = exc
        for _, future in batch:
            if future.done():  # gone while the write was in flight
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
