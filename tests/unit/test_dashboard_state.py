"""The dashboard's state, folded from events and polled snapshots, with numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.dashboard.state import DashboardState
from shared.contracts import (
    AccountUpdated,
    Action,
    Decision,
    Envelope,
    MessagePayload,
    OrderPlan,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    Reason,
    ReasonCode,
    RiskAlertCode,
    RiskAlertRaised,
    Signal,
    SignalAnalyzed,
    SignalReceived,
    TradeApproved,
    TradeRejected,
    Verdict,
)

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def envelope(payload: MessagePayload, at: datetime = NOON) -> Envelope:
    return Envelope.wrap(payload, producer="test", correlation_id="c").model_copy(
        update={"produced_at": at})


def fold(state: DashboardState, payload: MessagePayload, at: datetime = NOON) -> bool:
    return state.apply_event(envelope(payload, at), payload)


def signal(signal_id: str = "s-1", symbol: str = "BTCUSDT") -> Signal:
    return Signal(signal_id=signal_id, symbol=symbol, action=Action.LONG, price=43123.5,
                  confidence=0.9, strategy="p95 <b>test</b>", received_at=NOON)


def analysed(decision: Decision, signal_id: str = "s-1") -> SignalAnalyzed:
    return SignalAnalyzed(signal=signal(signal_id), decision=decision, leverage=20,
                          entry_price=43123.5)


def plan() -> OrderPlan:
    return OrderPlan(symbol="BTCUSDT", side="long", quantity=0.092, price=43123.5,
                     notional=3967.4, margin=198.4, leverage=20, stop_loss=42261.0,
                     take_profit=43986.0, liquidation_price=41131.9,
                     maintenance_margin_rate=0.004, maintenance_amount=0.0,
                     distance_to_liquidation=0.046, risk_at_stop=79.4)


def approved(signal_id: str = "s-1") -> TradeApproved:
    return TradeApproved(signal=signal(signal_id), verdict=Verdict(approved=True, order=plan()),
                         decided_at=NOON)


def rejected(signal_id: str = "s-2") -> TradeRejected:
    verdict = Verdict(approved=False, stage_failed=1, reasons=[Reason(
        code=ReasonCode.SYMBOL_NOT_ALLOWED, message="not allowed")])
    return TradeRejected(signal=signal(signal_id, "PEPEUSDT"), verdict=verdict, decided_at=NOON)


def filled(reduce_only: bool = False, order_id: str = "p95-1") -> OrderUpdated:
    return OrderUpdated(client_order_id=order_id, signal_id="s-1", symbol="BTCUSDT",
                        side="buy", status="FILLED", quantity=0.092, filled_quantity=0.092,
                        average_price=43132.1, reduce_only=reduce_only, updated_at=NOON)


def opened(position_id: str = "p-1") -> PositionOpened:
    return PositionOpened(position_id=position_id, signal_id="s-1", symbol="BTCUSDT",
                          side="long", quantity=0.092, entry_price=43132.1, margin=198.4,
                          leverage=20, stop_loss=42261.0, take_profit=43986.0,
                          liquidation_price=41131.9, opened_at=NOON)


def marked(mark: float, position_id: str = "p-1") -> PositionUpdated:
    return PositionUpdated(position_id=position_id, symbol="BTCUSDT", side="long",
                           quantity=0.092, entry_price=43132.1, margin=198.4,
                           stop_loss=42261.0, liquidation_price=41131.9, mark_price=mark,
                           unrealized_pnl=(mark - 43132.1) * 0.092, updated_at=NOON)


def funnel_counts(state: DashboardState, at: datetime = NOON) -> dict:
    funnel = state.view(at)[0]["funnel"]
    return {"received": funnel["received"], **funnel["decisions"],
            "approved": funnel["approved"], "rejected": funnel["rejected"],
            "filled": funnel["filled"]}


def test_the_funnel_counts_each_stage_once():
    state = DashboardState(NOON)
    for n in range(5):
        fold(state, SignalReceived(signal=signal(f"s-{n}")))
    for n, decision in enumerate([Decision.EXECUTE, Decision.EXECUTE, Decision.EXECUTE,
                                  Decision.HOLD, Decision.REJECT]):
        fold(state, analysed(decision, f"s-{n}"))
    fold(state, approved("s-0"))
    fold(state, approved("s-1"))
    fold(state, rejected("s-2"))
    fold(state, filled())
    fold(state, filled(reduce_only=True, order_id="p95-1-sl"))  # a stop: no entry
    again = approved("s-0")
    twice = envelope(again)
    assert state.apply_event(twice, again) is True
    assert state.apply_event(twice, again) is False  # redelivered: not counted again

    assert funnel_counts(state) == {"received": 5, "EXECUTE": 3, "HOLD": 1, "REJECT": 1,
                                    "CLOSE": 0, "approved": 3, "rejected": 1, "filled": 1}


def test_the_funnel_starts_again_at_midnight_utc_even_without_events():
    before_midnight = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    state = DashboardState(before_midnight)
    fold(state, SignalReceived(signal=signal("s-1")), before_midnight)
    fold(state, analysed(Decision.EXECUTE, "s-1"), before_midnight)
    assert funnel_counts(state, before_midnight)["received"] == 1

    midnight = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    body, _ = state.view(midnight)
    assert body["funnel"]["day"] == "2026-11-21"
    assert funnel_counts(state, midnight) == {
        "received": 0, "EXECUTE": 0, "HOLD": 0, "REJECT": 0, "CLOSE": 0, "approved": 0,
        "rejected": 0, "filled": 0}

    # Yesterday's verdict arriving late is shown in the feed, not counted today.
    fold(state, approved("s-1"), before_midnight)
    fold(state, SignalReceived(signal=signal("s-2")), midnight + timedelta(seconds=1))
    assert funnel_counts(state, midnight)["approved"] == 0
    assert funnel_counts(state, midnight)["received"] == 1
    assert state.view(midnight)[0]["feed"][-2]["text"].startswith("RISK approved long 0.092")


def test_a_day_later_event_counts_in_a_new_funnel():
    state = DashboardState(NOON)
    fold(state, SignalReceived(signal=signal("s-1")))
    tomorrow = NOON + timedelta(days=1)
    fold(state, SignalReceived(signal=signal("s-2")), tomorrow)
    assert state.funnel.day.isoformat() == "2026-11-21"
    assert funnel_counts(state, tomorrow)["received"] == 1


def position_view(state: DashboardState) -> dict:
    [position] = state.view(NOON)[0]["positions"]
    return position


def test_distance_to_liquidation_and_its_level_as_the_mark_falls():
    state = DashboardState(NOON)
    fold(state, opened())
    fresh = position_view(state)
    assert fresh["distance_to_liquidation"] is None and fresh["liquidation_level"] == "unknown"
    assert (fresh["stop_loss"], fresh["take_profit"]) == (42261.0, 43986.0)

    entry_distance = (43132.1 - 41131.9) / 43132.1  # 4.637%
    # (mark, distance, level): warning below half the entry distance, critical below a quarter
    for mark, distance, level in [(43000.0, 1868.1 / 43000, "ok"),
                                  (42000.0, 868.1 / 42000, "warning"),
                                  (41500.0, 368.1 / 41500, "critical")]:
        fold(state, marked(mark))
        position = position_view(state)
        assert position["mark_price"] == mark
        assert position["distance_to_liquidation"] == pytest.approx(distance)
        assert position["distance_at_entry"] == pytest.approx(entry_distance)
        assert position["liquidation_level"] == level
        assert position["unrealized_pnl"] == pytest.approx((mark - 43132.1) * 0.092)
        assert position["roe"] == pytest.approx((mark - 43132.1) * 0.092 / 198.4)
        # What PositionUpdated does not carry is kept from the opening.
        assert (position["take_profit"], position["leverage"]) == (43986.0, 20)
    assert position_view(state)["roe"] == pytest.approx(-0.76, abs=0.005)


def test_a_partial_close_reduces_a_position_and_a_full_close_removes_it():
    state = DashboardState(NOON)
    fold(state, opened())
    common = {"position_id": "p-1", "symbol": "BTCUSDT", "side": "long",
              "entry_price": 43132.1, "exit_price": 43977.2, "closed_at": NOON}
    fold(state, PositionClosed(**common, quantity=0.046, realized_pnl=38.9, roe=0.39,
                               reason="partial_take_profit", remaining_quantity=0.046))
    assert position_view(state)["quantity"] == 0.046
    fold(state, PositionClosed(**common, quantity=0.046, realized_pnl=-12.5, roe=-0.12,
                               reason="stop_loss"))
    body, _ = state.view(NOON)
    assert body["positions"] == []
    assert body["feed"][-1]["level"] == "bad"
    assert body["feed"][-1]["text"] == ("closed (stop_loss) @ 43977.2, PnL -12.50 USDT, "
                                        "ROE -12.0%")


def test_polled_positions_replace_what_events_built():
    state = DashboardState(NOON)
    fold(state, opened("p-gone"))
    state.apply_positions([{
        "position_id": "p-2", "symbol": "ETHUSDT", "side": "short", "quantity": 1.5,
        "entry_price": 2500.0, "margin": 187.5, "leverage": 20, "stop_loss": 2550.0,
        "take_profit": 2450.0, "liquidation_price": 2612.0, "mark_price": 2525.0,
        "unrealized_pnl": -37.5}])
    [position] = state.view(NOON)[0]["positions"]
    assert position["position_id"] == "p-2"
    assert position["distance_to_liquidation"] == pytest.approx(87 / 2525)
    assert position["roe"] == pytest.approx(-0.2)
    assert position["liquidation_level"] == "ok"  # 3.45% left of 4.48% at entry


def test_the_feed_is_bounded_and_updates_carry_only_new_lines():
    state = DashboardState(NOON, feed_size=3)
    for n in range(5):
        fold(state, SignalReceived(signal=signal(f"s-{n}")), NOON + timedelta(seconds=n))
    body, cursor = state.view(NOON)
    assert [item["seq"] for item in body["feed"]] == [3, 4, 5]
    assert body["feed"][0]["text"] == "signal long @ 43123.5 (p95 <b>test</b>)"

    update, cursor = state.view(NOON, cursor)
    assert update["feed"] == []
    fold(state, rejected())
    update, _ = state.view(NOON, cursor)
    assert [(item["seq"], item["level"], item["symbol"], item["text"])
            for item in update["feed"]] == [
        (6, "warning", "PEPEUSDT", "RISK rejected: SYMBOL_NOT_ALLOWED")]


def test_equity_history_keeps_one_point_a_minute_and_is_bounded():
    state = DashboardState(NOON, equity_points=3, equity_resolution_s=60)

    def account(equity: float, seconds: float) -> None:
        fold(state, AccountUpdated(wallet_balance=10_000, equity=equity, used_margin=0,
                                   free_margin=equity, day_start_equity=10_000,
                                   daily_pnl=equity - 10_000, updated_at=NOON),
             NOON + timedelta(seconds=seconds))

    minute = NOON.timestamp()
    account(10_000.0, 0)
    account(10_010.0, 30)  # the same minute: the point follows the live value
    assert list(state.equity_history) == [(minute, 10_010.0)]
    account(10_020.0, 60)
    state.apply_risk_status({"trading_state": "ACTIVE", "equity": 10_030.0,
                             "daily_pnl": 30.0}, NOON + timedelta(seconds=125))
    account(10_040.0, 185)
    account(9_000.0, 100)  # older than the last point: ignored
    assert list(state.equity_history) == [
        (minute + 60, 10_020.0), (minute + 120, 10_030.0), (minute + 180, 10_040.0)]
    assert (state.equity, state.daily_pnl) == (9_000.0, -1_000.0)  # the latest message

    body, cursor = state.view(NOON)
    assert body["equity_history"] == [[minute + 60, 10_020.0], [minute + 120, 10_030.0],
                                      [minute + 180, 10_040.0]]
    account(10_050.0, 190)
    update, _ = state.view(NOON, cursor)
    assert update["equity_history"] == [[minute + 180, 10_050.0]]  # the moved last point


def test_the_trading_state_follows_risk_alerts_and_status():
    state = DashboardState(NOON)
    state.apply_risk_status({"trading_state": "ACTIVE", "reason": None, "equity": 10_000.0,
                             "daily_pnl": 0.0}, NOON)
    fold(state, RiskAlertRaised(code=RiskAlertCode.TRADING_STATE_CHANGED, severity="warning",
                                message="ACTIVE → HALTED: daily loss limit",
                                details={"from": "ACTIVE", "to": "HALTED",
                                         "reason": "daily loss limit"}, raised_at=NOON))
    body, _ = state.view(NOON)
    assert body["trading"] == {"state": "HALTED", "reason": "daily loss limit"}
    assert body["feed"][-1]["level"] == "warning"
    assert body["feed"][-1]["text"].startswith("TRADING_STATE_CHANGED: ACTIVE → HALTED")


def test_service_health_is_unknown_until_polled():
    state = DashboardState(NOON)
    state.apply_health("risk", "unreachable", {"error": "ConnectError"}, NOON)
    services = state.view(NOON)[0]["services"]
    assert services["brain"] == {"status": "unknown", "checks": {}, "checked_at": None}
    assert services["risk"] == {"status": "unreachable", "checks": {"error": "ConnectError"},
                                "checked_at": NOON.isoformat()}
