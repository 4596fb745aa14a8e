"""Group commit: the rows of concurrent webhooks written with one INSERT and one commit.

Alone, an insert costs a connection check-out, its ping and a transaction: about as much CPU as
the rest of a webhook. Shared by every row handed in while the previous write was in flight, it
costs little. Each caller still waits until its own row is committed, or gets its own row's error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Row = dict[str, Any]


class BatchInserter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], table: Table) -> None:
        self.sessions = sessions
        self.table = table
        self._waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, row: Row) -> None:
        """Returns once `row` is committed; raises what inserting it alone would have raised."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting(), name="batch-insert")
        await future

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write(batch)
        finally:
            self._writer = None

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
            if len(batch) > 1 and not exc.connection_invalidated:
                # One row's fault (its key is stored already, a value the column refuses) must
                # not fail the others: find whose, row by row. Rare: Redis claims keep
                # duplicates out and validation keeps bad values out.
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
