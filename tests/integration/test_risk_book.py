"""RISK decides from a book in memory (services/risk/book.py): on PostgreSQL, the book kept
by every write equals the tables, after a restart as after a failed write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from services.risk.book import Book
from services.risk.models import Reservation, VerdictRecord
from shared.contracts import (
    AccountUpdated,
    Action,
    Decision,
    OrderUpdated,
    PositionClosed,
    PositionUpdated,
    TradingState,
)
from shared.outbox import OutboxMessage
from tests.integration.conftest import API_KEY
from tests.integration.helpers import body, drain
from tests.integration.risk_fixtures import analysis, opened


def contents(book: Book) -> dict[str, Any]:
    def columns(row: Any) -> dict[str, Any]:
        return {c.name: getattr(row, c.name) for c in row.__table__.columns}

    return {
        "state": columns(book.state), "limits": book.limits,
        "account": columns(book.account) if book.account else None,
        "positions": {k: columns(p) for k, p in book.positions.items()},
        "reservations": {k: columns(r) for k, r in book.reservations.items()},
        "stop_outs": book.stop_outs, "approvals": book.approvals,
    }


async def kept_and_stored(engine) -> tuple[dict[str, Any], dict[str, Any]]:
    """The book as the writes kept it, and as the tables have it."""
    return contents(await engine._read()), contents(await engine._load())


def closed(position_id: str, symbol: str, reason: str, remaining: float = 0.0
           ) -> PositionClosed:
    return PositionClosed(
        position_id=position_id, symbol=symbol, side="long", quantity=0.1 - remaining,
        entry_price=60000.0, exit_price=58800.0, realized_pnl=-120.0, roe=-0.4,
        reason=reason, remaining_quantity=remaining, closed_at=datetime.now(UTC))


async def test_the_book_kept_by_every_kind_of_write_is_the_one_read_after_a_restart(
    make_risk_on_postgres
):
    async with make_risk_on_postgres() as risk:
        engine = risk.app.state.engine
        now = datetime.now(UTC)
        await engine.on_account_updated(AccountUpdated(
            wallet_balance=20000, equity=20000, used_margin=0, free_margin=20000,
            day_start_equity=20000, daily_pnl=-150, updated_at=now))
        await risk.client.post("/update", headers={"X-API-Key": API_KEY}, json={
            "limits": {"max_open_positions": 8}})
        btc, eth, xrp = (analysis(symbol="BTCUSDT"), analysis(symbol="ETHUSDT", price=3000.0),
                         analysis(symbol="XRPUSDT", price=0.5))
        for entry in (btc, eth, xrp, analysis(symbol="PEPEUSDT", price=0.00001),
                      analysis(action=Action.CLOSE, decision=Decision.CLOSE)):
            await engine.decide(entry)
        await engine.on_order_updated(OrderUpdated(
            client_order_id="c-eth", signal_id=eth.signal.signal_id, symbol="ETHUSDT",
            side="buy", status="REJECTED", quantity=1, updated_at=now))
        await engine.on_position_opened(opened("p-btc", "BTCUSDT", btc.signal.signal_id))
        await engine.on_position_closed(closed("p-btc", "BTCUSDT", "take_profit", 0.04))
        await engine.on_position_opened(opened("p-sol", "SOLUSDT"))
        await engine.on_position_updated(PositionUpdated(
            position_id="p-sol", symbol="SOLUSDT", side="long", quantity=0.1,
            entry_price=60000.0, margin=300.0, stop_loss=59500.0, liquidation_price=57261.3,
            mark_price=60100.0, unrealized_pnl=10.0, updated_at=now))
        await engine.on_position_opened(opened("p-ada", "ADAUSDT"))
        await engine.on_position_closed(closed("p-ada", "ADAUSDT", "stop_loss"))

        kept, stored = await kept_and_stored(engine)
        assert kept == stored
        assert set(kept["positions"]) == {"p-btc", "p-sol"}
        assert kept["positions"]["p-btc"]["quantity"] == 0.04
        assert kept["positions"]["p-sol"]["stop_loss"] == 59500.0
        assert set(kept["reservations"]) == {xrp.signal.signal_id}
        assert set(kept["stop_outs"]) == {"ADAUSDT"}
        assert len(kept["approvals"]) == 4  # three entries and the close
        assert kept["limits"].max_open_positions == 8
        status = await risk.status()

    async with make_risk_on_postgres() as restarted:
        assert contents(await restarted.app.state.engine._read()) == kept
        assert await restarted.status() == status


async def test_a_verdict_that_halts_trading_leaves_the_book_halted(make_risk_on_postgres):
    """Resumed while today's loss is still past the limit: the next entry halts trading
    again, in the book as in the table."""
    async with make_risk_on_postgres() as risk:
        engine = risk.app.state.engine
        await engine.on_account_updated(AccountUpdated(
            wallet_balance=9000, equity=9000, used_margin=0, free_margin=9000,
            day_start_equity=10000, daily_pnl=-1000, updated_at=datetime.now(UTC)))
        await engine.change_state(TradingState.ACTIVE, "operator resumes", "test")
        assert (await engine.current_state()).trading_state == "ACTIVE"
        await engine.decide(analysis())
        kept, stored = await kept_and_stored(engine)
        assert kept == stored
        assert kept["state"]["trading_state"] == "HALTED"
        assert kept["state"]["reason"] == "daily loss limit reached"
        assert kept["approvals"] == [] and kept["reservations"] == {}


async def test_a_failed_verdict_changes_nothing_and_is_decided_on_the_next_delivery(
        make_risk_on_postgres):
    """An error the database raises as a unique violation that is not a second verdict must
    not pass for a redelivery: the analysis would be acked without a verdict."""
    async with make_risk_on_postgres() as risk:
        engine = risk.app.state.engine
        before = contents(await engine._read())
        async with engine.sessions.begin() as session:
            await session.execute(text(
                "CREATE FUNCTION injected() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'injected' USING ERRCODE = 'unique_violation'; END $$ "
                "LANGUAGE plpgsql"))
            await session.execute(text(
                "CREATE TRIGGER injected BEFORE INSERT ON outbox_messages "
                "FOR EACH ROW EXECUTE FUNCTION injected()"))
        entry = analysis()
        with pytest.raises(IntegrityError):
            await engine.decide(entry)
        kept, stored = await kept_and_stored(engine)
        assert kept == stored == before

        async with engine.sessions.begin() as session:
            await session.execute(text("DROP TRIGGER injected ON outbox_messages"))
        await engine.decide(entry)
        kept, stored = await kept_and_stored(engine)
        assert kept == stored
        assert set(kept["reservations"]) == {entry.signal.signal_id}
        assert len(kept["approvals"]) == 1


async def test_a_failed_event_changes_nothing_until_it_is_handled_again(make_risk_on_postgres):
    async with make_risk_on_postgres() as risk:
        engine = risk.app.state.engine
        entry = analysis()
        await engine.decide(entry)
        before = contents(await engine._read())
        async with engine.sessions.begin() as session:
            await session.execute(text(
                "CREATE FUNCTION injected() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql"))
            await session.execute(text(
                "CREATE TRIGGER injected AFTER UPDATE ON risk_reservations "
                "FOR EACH ROW EXECUTE FUNCTION injected()"))
        event_ = opened("p-btc", "BTCUSDT", entry.signal.signal_id)
        with pytest.raises(Exception, match="injected"):
            await engine.on_position_opened(event_)
        kept, stored = await kept_and_stored(engine)
        assert kept == stored == before  # neither the position nor the release

        async with engine.sessions.begin() as session:
            await session.execute(text("DROP TRIGGER injected ON risk_reservations"))
        await engine.on_position_opened(event_)
        kept, stored = await kept_and_stored(engine)
        assert kept == stored
        assert (set(kept["positions"]), kept["reservations"]) == ({"p-btc"}, {})


class AnswerLost:
    """RISK's sessions, but the first commit of a verdict, once done, reports an error (the
    connection dropped with the answer)."""

    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions
        self.armed = True

    def __call__(self) -> Any:
        return self.sessions()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        async with self.sessions.begin() as session:
            yield session
            verdict = any(isinstance(row, VerdictRecord) for row in session.new)
        if verdict and self.armed:
            self.armed = False
            raise ConnectionError("connection lost before the commit's answer")


async def test_a_verdict_committed_whose_answer_was_lost_is_kept_and_not_decided_again(
    make_risk_on_postgres, amqp, monkeypatch
):
    """The book cannot tell whether such a commit happened, so it is read again; the
    redelivery finds the verdict already made."""
    async with make_risk_on_postgres() as risk:
        engine = risk.app.state.engine
        entry = analysis()
        monkeypatch.setattr(engine, "sessions", AnswerLost(engine.sessions))
        with pytest.raises(ConnectionError):
            await engine.decide(entry)
        kept, stored = await kept_and_stored(engine)
        assert kept == stored
        assert set(kept["reservations"]) == {entry.signal.signal_id}
        assert len(kept["approvals"]) == 1

        await engine.decide(entry)  # the redelivery
        assert contents(await engine._read()) == kept
        async with engine.sessions() as session:
            for table in (VerdictRecord, Reservation):
                assert await session.scalar(select(func.count()).select_from(table)) == 1
            assert await session.scalar(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.routing_key == "trade.execute")) == 1
        verdicts = [m for m in await drain(amqp, "trade_execution", settle_s=1.0)
                    if body(m)["correlation_id"] == entry.signal.signal_id]
        assert len({body(m)["message_id"] for m in verdicts}) == 1


async def test_reservations_expire_from_the_book_as_from_the_table(make_risk_on_postgres):
    async with make_risk_on_postgres(reservation_ttl_s=0.5) as risk:
        engine = risk.app.state.engine
        await engine.decide(analysis())
        assert len(await engine.reservations(datetime.now(UTC))) == 1
        later = datetime.now(UTC) + timedelta(seconds=1)
        assert await engine.reservations(later) == []
        assert (await engine._load()).live_reservations(later) == []
