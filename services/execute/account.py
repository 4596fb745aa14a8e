"""The account: equity, margins and today's PnL; `account.updated`, snapshots, Redis."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from services.execute.engine import ExecutionEngine
from services.execute.metrics import EQUITY
from services.execute.models import AccountSnapshot, PositionRecord
from shared.contracts import AccountUpdated
from shared.observability.logging import get_logger

log = get_logger(__name__)


class AccountKeeper:
    def __init__(self, engine: ExecutionEngine) -> None:
        self.engine = engine
        self._day: tuple[datetime, float] | None = None  # (UTC midnight, equity then)

    async def day_start_equity(self, now: datetime, equity: float) -> float:
        """Equity at 00:00 UTC: the first snapshot of the day (this one, if none yet)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self._day is None or self._day[0] != midnight:
            async with self.engine.sessions() as session:
                first = (await session.scalars(
                    select(AccountSnapshot.equity).where(AccountSnapshot.taken_at >= midnight)
                    .order_by(AccountSnapshot.taken_at).limit(1))).first()
            self._day = (midnight, first if first is not None else equity)
        return self._day[1]

    async def current(self, positions: list[PositionRecord] | None = None) -> AccountUpdated:
        """`positions`: the open ones, if the caller has just read them."""
        now = self.engine.now()
        balance = await self.engine.exchange.fetch_balance()
        if positions is None:
            positions = await self.engine.open_positions()
        used = sum(p.margin for p in positions)
        day_start = await self.day_start_equity(now, balance.equity)
        return AccountUpdated(
            wallet_balance=balance.wallet_balance, equity=balance.equity, used_margin=used,
            free_margin=balance.equity - used, day_start_equity=day_start,
            daily_pnl=balance.equity - day_start, updated_at=now)

    async def publish(self, positions: list[PositionRecord] | None = None) -> AccountUpdated:
        """Snapshot stored and `account.updated` sent (through the outbox), Redis mirrored."""
        account = await self.current(positions)
        async with self.engine.sessions.begin() as session:
            session.add(AccountSnapshot(
                wallet_balance=account.wallet_balance, equity=account.equity,
                used_margin=account.used_margin, free_margin=account.free_margin,
                day_start_equity=account.day_start_equity, daily_pnl=account.daily_pnl,
                taken_at=account.updated_at))
            self.engine._stage(session, account, "account.updated", None)
        EQUITY.set(account.equity)
        try:
            await self.engine.redis.hset(self.engine.keys("account"), mapping={
                k: str(v) for k, v in account.model_dump(mode="json").items()})
        except Exception as exc:
            log.warning("account not mirrored to Redis", error=f"{type(exc).__name__}")
        await self.engine.outbox.send_pending()
        return account
