"""NOTIFY's Telegram messages (notify.md, "Telegram"): one short HTML message per event, built
from real payload objects of the contracts; the numbers shown, the escaping, the events that
say nothing, and splitting and merging for Telegram's 4096-character limit. Every piece is
also checked with the Telegram HTML parser of the fake (tests/fakes/telegram.py)."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime

import pytest

from services.notify import messages
from services.notify.messages import digest, digest_count, digests, render, split_text
from shared.contracts import (
    AccountUpdated,
    Action,
    ChangeTradingState,
    ClosePosition,
    Decision,
    EmergencyCloseTriggered,
    ExecutionAlertRaised,
    OrderPlan,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    Reason,
    ReasonCode,
    RiskAlertCode,
    RiskAlertRaised,
    Scores,
    Signal,
    SignalAnalyzed,
    SignalReceived,
    Sizing,
    TradeApproved,
    TradeRejected,
    TradingState,
    Verdict,
)
from tests.fakes.telegram import parse_html

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script> & co"
HOSTILE_ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co"


def signal(action: Action = Action.LONG, strategy: str = "trend-v2") -> Signal:
    return Signal(signal_id="sig-1", symbol="BTCUSDT", action=action, price=60_000.5,
                  confidence=0.9, rsi=50, strategy=strategy, timeframe="15m",
                  received_at=NOW)


SCORES = Scores(technical=0.99, phoenix=0.8025, market=0.56, composite=0.81025,
                phoenix95=0.81025, final_confidence=1.0)
PLAN = OrderPlan(symbol="BTCUSDT", side="long", quantity=0.05, price=60_000.5,
                 notional=3_000.03, margin=150.0, leverage=20, stop_loss=58_800.0,
                 take_profit=62_400.0, liquidation_price=57_300.2,
                 maintenance_margin_rate=0.004, maintenance_amount=0.0,
                 distance_to_liquidation=0.045, risk_at_stop=60.02)


def analysis(decision: Decision, **fields: object) -> SignalAnalyzed:
    values: dict[str, object] = {
        "signal": signal(Action.CLOSE if decision is Decision.CLOSE else Action.LONG),
        "decision": decision, "leverage": 20, "entry_price": 60_000.5}
    if decision is Decision.EXECUTE:
        values |= {"scores": SCORES, "stop_loss": 58_800.0, "take_profit": 62_400.0,
                   "sizing": Sizing(win_rate=0.55, payoff_ratio=1.0, kelly=0.1,
                                    margin_fraction=0.02)}
    elif decision is Decision.HOLD:
        values |= {"scores": SCORES, "reasons": [Reason(
            code=ReasonCode.BELOW_EXECUTION_THRESHOLD, value=0.81, limit=0.85,
            message="F < 0.85")]}
    elif decision is Decision.REJECT:
        values |= {"reasons": [Reason(code=ReasonCode.CONFIDENCE_BELOW_MINIMUM, value=0.2,
                                      limit=0.25)]}
    return SignalAnalyzed.model_validate(values | fields)


def closed(**fields: object) -> PositionClosed:
    values: dict[str, object] = {
        "position_id": "pos-1", "symbol": "BTCUSDT", "side": "long", "quantity": 0.05,
        "entry_price": 60_000.5, "exit_price": 62_400.0, "realized_pnl": 118.78,
        "roe": 0.7919, "reason": "take_profit", "closed_at": NOW}
    return PositionClosed.model_validate(values | fields)


def risk_alert(code: RiskAlertCode, **details: object) -> RiskAlertRaised:
    return RiskAlertRaised(code=code, severity="critical", message="BTCUSDT long is close",
                           symbol="BTCUSDT", details=details, raised_at=NOW)


def assert_telegram_html(text: str) -> str:
    """Telegram would parse it; returns what the chat shows."""
    plain, _ = parse_html(text)
    return plain


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def test_execute_analysis_shows_the_scores_and_the_plan() -> None:
    text = render("signal.analyzed", analysis(Decision.EXECUTE))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "EXECUTE" in shown and "BTCUSDT" in shown and "LONG" in shown
    assert "price 60000.5" in shown and "confidence 90.00%" in shown
    assert "Phoenix 95 0.81" in shown and "final 1" in shown and "composite 0.81" in shown
    assert "entry 60000.5" in shown and "20x" in shown
    assert "SL 58800" in shown and "TP 62400" in shown
    assert "margin 2.00% of equity" in shown


def test_hold_and_reject_show_their_reasons_with_the_numbers() -> None:
    hold = render("signal.analyzed", analysis(Decision.HOLD))
    assert hold is not None
    shown = assert_telegram_html(hold)
    assert "HOLD" in shown
    assert "BELOW_EXECUTION_THRESHOLD · value 0.81 · limit 0.85 — F < 0.85" in shown
    assert "<code>BELOW_EXECUTION_THRESHOLD</code>" in hold and "F &lt; 0.85" in hold
    reject = render("signal.analyzed", analysis(Decision.REJECT))
    assert reject is not None
    assert "CONFIDENCE_BELOW_MINIMUM · value 0.2 · limit 0.25" in assert_telegram_html(reject)
    assert "Scores" not in reject  # none given


def test_notify_holds_false_mutes_hold_and_reject_only() -> None:
    for decision in (Decision.HOLD, Decision.REJECT):
        assert render("signal.analyzed", analysis(decision), notify_holds=False) is None
        assert render("signal.analyzed", analysis(decision), notify_holds=True) is not None
    for decision in (Decision.EXECUTE, Decision.CLOSE):
        assert render("signal.analyzed", analysis(decision), notify_holds=False) is not None


def test_approval_shows_the_order() -> None:
    text = render("trade.approved", TradeApproved(
        signal=signal(), verdict=Verdict(approved=True, order=PLAN), decided_at=NOW))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Approved" in shown and "BTCUSDT" in shown
    assert "Qty 0.05 @ 60000.5" in shown and "notional 3,000.03" in shown
    assert "margin 150.00 USDT" in shown and "20x" in shown
    assert "SL 58800 · TP 62400 · liq. 57300.2 (4.50% away)" in shown
    assert "Risk at stop 60.02 USDT" in shown
    close = render("trade.approved", TradeApproved(
        signal=signal(Action.CLOSE), verdict=Verdict(approved=True, close=True),
        decided_at=NOW))
    assert close is not None and "close" in close and "BTCUSDT" in close


def test_rejection_lists_every_reason_with_code_value_and_limit() -> None:
    verdict = Verdict(approved=False, stage_failed=2, order=PLAN, reasons=[
        Reason(code=ReasonCode.LEVERAGE_EXCEEDS_MAX, value=25, limit=20,
               message="leverage 25 > max 20"),
        Reason(code=ReasonCode.INSUFFICIENT_MARGIN, value=150.0, limit=120.5),
        Reason(code=ReasonCode.POSITION_ALREADY_OPEN, message="BTCUSDT long is open"),
    ])
    text = render("trade.rejected", TradeRejected(signal=signal(), verdict=verdict,
                                                  decided_at=NOW))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Rejected by RISK (stage 2)" in shown
    assert "• LEVERAGE_EXCEEDS_MAX · value 25 · limit 20 — leverage 25 > max 20" in shown
    assert "• INSUFFICIENT_MARGIN · value 150 · limit 120.5" in shown
    assert "• POSITION_ALREADY_OPEN — BTCUSDT long is open" in shown
    assert "leverage 25 &gt; max 20" in text


def test_position_opened_shows_entry_quantity_margin_sl_tp_and_liquidation() -> None:
    text = render("position.opened", PositionOpened(
        position_id="pos-1", symbol="ETHUSDT", side="short", quantity=1.25,
        entry_price=3_012.34, margin=188.27, leverage=20, stop_loss=3_072.59,
        take_profit=2_952.09, liquidation_price=3_150.11, opened_at=NOW))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Position opened" in shown and "ETHUSDT" in shown and "SHORT" in shown
    for piece in ("Entry 3012.34", "qty 1.25", "margin 188.27 USDT", "SL 3072.59",
                  "TP 2952.09", "Liquidation 3150.11", "20x"):
        assert piece in shown


def test_position_opened_without_protection_says_so() -> None:
    text = render("position.opened", PositionOpened(
        position_id="pos-1", symbol="ETHUSDT", side="long", quantity=1, entry_price=3_000,
        margin=150, leverage=20, liquidation_price=2_860, opened_at=NOW))
    assert text is not None and "SL — · TP —" in text


def test_position_closed_with_profit_and_with_loss() -> None:
    win = render("position.closed", closed())
    assert win is not None
    shown = assert_telegram_html(win)
    assert shown.startswith(messages.PROFIT)
    assert "Position closed" in shown and "Reason: take-profit" in shown
    assert "PnL +118.78 USDT" in shown and "ROE +79.19%" in shown
    assert "Entry 60000.5 → exit 62400 · qty 0.05" in shown

    loss = render("position.closed", closed(exit_price=58_800.0, realized_pnl=-61.22,
                                            roe=-0.4081, reason="stop_loss"))
    assert loss is not None
    assert loss.startswith(messages.LOSS)
    assert "PnL <b>-61.22 USDT</b>" in loss and "ROE -40.81%" in loss
    assert "stop-loss" in loss

    unknown = render("position.closed", closed(reason="<weird>", realized_pnl=0.0, roe=0.0))
    assert unknown is not None and unknown.startswith(messages.FLAT)
    assert "&lt;weird&gt;" in unknown


def test_partial_take_profit() -> None:
    text = render("position.closed", closed(reason="partial_take_profit", quantity=0.025,
                                            remaining_quantity=0.025, realized_pnl=59.39,
                                            roe=0.79))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Partial take-profit" in shown and "PnL +59.39 USDT" in shown
    assert "qty 0.025" in shown and "Remaining qty 0.025" in shown
    assert "stop moved to entry" in shown


def test_liquidation_warning_and_critical() -> None:
    details = {"position_id": "pos-1", "price": 58_000.0, "liquidation_price": 57_300.2,
               "distance": 0.0121, "entry_distance": 0.045}
    critical = render("risk.alert", risk_alert(RiskAlertCode.LIQUIDATION_CRITICAL, **details))
    warning = render("risk.alert", risk_alert(RiskAlertCode.LIQUIDATION_WARNING, **details))
    assert critical is not None and warning is not None
    assert "Liquidation CRITICAL" in critical and critical.startswith("🚨")
    assert "Liquidation warning" in warning and warning.startswith("⚠️")
    shown = assert_telegram_html(critical)
    assert "BTCUSDT" in shown and "Distance to liquidation 1.21% (was 4.50% at entry)" in shown
    assert "Mark 58000 · liquidation 57300.2" in shown
    # Without details the alert's own message is shown, escaped.
    bare = RiskAlertRaised(code=RiskAlertCode.LIQUIDATION_WARNING, severity="warning",
                           message=HOSTILE, raised_at=NOW)
    text = render("risk.alert", bare)
    assert text is not None and HOSTILE_ESCAPED in text


def test_trading_state_change() -> None:
    text = render("risk.alert", RiskAlertRaised(
        code=RiskAlertCode.TRADING_STATE_CHANGED, severity="critical",
        message="trading ACTIVE → HALTED", raised_at=NOW,
        details={"from": "ACTIVE", "to": "HALTED", "reason": "daily loss <5%>",
                 "changed_by": "telegram:424242"}))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Trading HALTED (was ACTIVE)" in shown
    assert "Reason: daily loss <5%>" in shown and "By: telegram:424242" in shown
    assert messages.trading_state_changed(None, "ACTIVE").startswith("▶️")


def test_emergency_close() -> None:
    text = render("account.emergency", EmergencyCloseTriggered(
        daily_pnl=-520.0, day_start_equity=10_000.0, threshold=-500.0, triggered_at=NOW))
    assert text is not None
    shown = assert_telegram_html(text)
    assert "EMERGENCY CLOSE" in shown and shown.startswith("🚨")
    assert "-520.00 USDT" in shown and "-5.20%" in shown and "10,000.00" in shown
    assert "-500.00 USDT" in shown


@pytest.mark.parametrize(("code", "title"), [
    ("UNPROTECTED_POSITION_CLOSED", "Unprotected position closed"),
    ("STALE_PRICES", "Stale prices"),
])
def test_execute_alerts(code: str, title: str) -> None:
    text = render("execution.alert", ExecutionAlertRaised(
        code=code, severity="critical", message=HOSTILE, symbol="ETHUSDT",
        details={"position_id": "pos-9", "age_s": 31.5}, raised_at=NOW))
    assert text is not None
    shown = assert_telegram_html(text)
    assert title in shown and code in shown and "ETHUSDT" in shown and "critical" in shown
    assert "position_id: pos-9" in shown and "age_s: 31.5" in shown
    assert HOSTILE_ESCAPED in text


def test_order_rejected_and_other_order_updates() -> None:
    order = OrderUpdated(client_order_id="p95-3f9a", symbol="BTCUSDT", side="buy",
                         status="REJECTED", quantity=0.05, error="Margin is <insufficient>.",
                         updated_at=NOW)
    text = render("order.updated", order)
    assert text is not None
    shown = assert_telegram_html(text)
    assert "Order rejected" in shown and "BTCUSDT" in shown and "0.05" in shown
    assert "Error: Margin is <insufficient>." in shown and "p95-3f9a" in shown
    for status in ("NEW", "SUBMITTED", "FILLED", "CANCELED", "UNKNOWN"):
        assert render("order.updated", order.model_copy(update={"status": status})) is None


def test_events_that_say_nothing() -> None:
    assert render("signal.received", SignalReceived(signal=signal())) is None
    assert render("position.updated", PositionUpdated(
        position_id="pos-1", symbol="BTCUSDT", side="long", quantity=0.05,
        entry_price=60_000, margin=150, liquidation_price=57_300, mark_price=60_100,
        unrealized_pnl=5.0, updated_at=NOW)) is None
    assert render("account.updated", AccountUpdated(
        wallet_balance=10_000, equity=10_005, used_margin=150, free_margin=9_855,
        day_start_equity=10_000, daily_pnl=5, updated_at=NOW)) is None
    assert render("control.trading_state", ChangeTradingState(
        state=TradingState.HALTED, requested_by="telegram:1")) is None
    assert render("control.close_position", ClosePosition(all=True,
                                                          requested_by="telegram:1")) is None


def test_a_payload_of_another_type_is_a_bug() -> None:
    with pytest.raises(TypeError):
        render("position.opened", closed())


def test_outside_text_is_escaped() -> None:
    text = render("signal.analyzed", analysis(Decision.EXECUTE, signal=signal(
        strategy=HOSTILE)))
    assert text is not None
    assert HOSTILE_ESCAPED in text and "<script>" not in text
    assert HOSTILE in assert_telegram_html(text)


# ---------------------------------------------------------------------------------------------
# Messages that are not events
# ---------------------------------------------------------------------------------------------


def test_alert() -> None:
    text = messages.alert("Disk <90%>", "critical", "only 3 GB & falling")
    assert text.startswith("🚨")
    shown = assert_telegram_html(text)
    assert "Disk <90%> · critical" in shown and "only 3 GB & falling" in shown
    assert messages.alert("Note", "info", "").startswith("ℹ️")
    assert messages.alert("Note", "warning", "x").startswith("⚠️")


def test_alertmanager_payload() -> None:
    text = messages.alertmanager({
        "version": "4", "status": "firing", "receiver": "notify",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "ServiceDown", "severity": "critical",
                                            "instance": "risk:8101", "job": "risk"},
             "annotations": {"summary": "RISK is down", "description": "no scrape for 1m"}},
            {"status": "resolved", "labels": {"alertname": "StalePrices",
                                              "severity": "warning"},
             "annotations": {"summary": "prices stale"}},
        ]})
    shown = assert_telegram_html(text)
    assert "🚨 ServiceDown · critical\nRISK is down\nno scrape for 1m" in shown
    assert "instance=risk:8101 job=risk" in shown
    assert "✅ StalePrices · resolved\nprices stale" in shown


def test_dead_letter() -> None:
    text = messages.dead_letter("risk_signals", "bad payload <x>", message_type="signal.analyzed",
                                message_id="m-1", count=5)
    shown = assert_telegram_html(text)
    assert "Dead letter · queue risk_signals" in shown
    assert "type signal.analyzed · id m-1" in shown
    assert "Reason: bad payload <x>" in shown and "Deliveries: 5" in shown
    assert "Reason" in messages.dead_letter("q", "r")


def test_daily_summary() -> None:
    text = messages.daily_summary(date(2025, 3, 1), realized_pnl=230.5, trades=8, wins=5,
                                  equity=10_230.5, day_start_equity=10_000, open_positions=2)
    shown = assert_telegram_html(text)
    assert "Daily summary · 2025-03-01" in shown
    assert "PnL +230.50 USDT (+2.31%)" in shown and shown.count(messages.PROFIT) == 1
    assert "Trades 8 · wins 5 · win rate 62.50%" in shown
    assert "Equity 10,230.50 USDT" in shown and "Open positions 2" in shown
    quiet = messages.daily_summary(date(2025, 3, 2), realized_pnl=0.0, trades=0, wins=0,
                                   equity=10_230.5)
    assert "win rate —" in quiet and messages.FLAT in quiet
    losing = messages.daily_summary(date(2025, 3, 3), realized_pnl=-12.0, trades=1, wins=0,
                                    equity=10_218.5)
    assert messages.LOSS in losing and "-12.00 USDT" in losing and "win rate 0.00%" in losing


def test_number_formats() -> None:
    assert messages.num(60_000.0) == "60000"
    assert messages.num(0.00001234) == "0.00001234"
    assert messages.num(43_123.5) == "43123.5"
    assert messages.num(-0.5) == "-0.5"
    assert messages.num(0) == "0" and messages.num(None) == "—"
    assert messages.usdt(10_000) == "10,000.00"
    assert messages.usdt(12.5, signed=True) == "+12.50"
    assert messages.pct(0.1234) == "12.34%" and messages.pct(-0.05, signed=True) == "-5.00%"


# ---------------------------------------------------------------------------------------------
# Splitting and merging
# ---------------------------------------------------------------------------------------------


def _squeezed(text: str) -> str:
    """What the chat shows, without white space (cuts drop a line break or a space)."""
    return re.sub(r"\s", "", assert_telegram_html(text))


def test_a_text_at_the_limit_is_not_split() -> None:
    text = "x" * 4096
    assert split_text(text) == [text]
    lines = ("a" * 99 + "\n") * 40 + "b" * 95  # 4095 characters
    assert len(lines) == 4095 and split_text(lines) == [lines]
    assert split_text(lines + "c") == [lines + "c"]  # 4096


def test_one_character_over_the_limit_cuts_at_the_last_line_break() -> None:
    first = "a" * 2000
    second = "b" * 2095
    text = first + "\n" + second  # 4096
    assert split_text(text) == [text]
    assert split_text(text + "b") == [first, second + "b"]


def test_pieces_fill_up_to_the_limit_exactly() -> None:
    line = "x" * 9  # 10 with its line break
    text = "\n".join([line] * 30)  # 299 characters
    pieces = split_text(text, limit=99)
    assert [len(p) for p in pieces] == [99, 99, 99]
    assert "\n".join(pieces) == text


def test_a_single_long_line_is_cut_hard() -> None:
    assert split_text("y" * 10_000) == ["y" * 4096, "y" * 4096, "y" * 1808]
    words = " ".join(["word"] * 2000)
    pieces = split_text(words)
    assert all(len(p) <= 4096 for p in pieces) and len(pieces) == 3
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert " ".join(pieces) == words


def test_never_inside_a_tag_or_an_entity() -> None:
    text = "&amp;" * 30 + '<a href="https://example.test/a-long-path">link</a>' * 10
    for limit in range(60, 130, 7):
        pieces = split_text(text, limit=limit)
        for piece in pieces:
            assert len(piece) <= limit
            assert_telegram_html(piece)
            assert not re.search(r"&[a-z]*$", piece) and not re.search(r"^[a-z]*;", piece)
        assert "".join(_squeezed(p) for p in pieces) == _squeezed(text)


def test_open_tags_are_closed_and_opened_again() -> None:
    text = "<b>" + "\n".join(f"line {i} <i>in</i>" for i in range(20)) + "</b>"
    pieces = split_text(text, limit=80)
    assert len(pieces) > 1
    for piece in pieces:
        assert len(piece) <= 80
        assert piece.startswith("<b>") and piece.endswith("</b>")
        assert_telegram_html(piece)
    assert "".join(_squeezed(p) for p in pieces) == _squeezed(text)


def test_split_real_messages_at_random_limits() -> None:
    rng = random.Random(95)
    parts = [render("signal.analyzed", analysis(Decision.HOLD)),
             render("position.closed", closed()),
             messages.alert("A <b>", "warning", "x & y\n" * 5)]
    text = digest([p for p in parts if p] * 20)
    for _ in range(40):
        limit = rng.randint(60, 1500)
        pieces = split_text(text, limit=limit)
        assert all(len(p) <= limit for p in pieces)
        for piece in pieces:
            assert_telegram_html(piece)
        assert "".join(_squeezed(p) for p in pieces) == _squeezed(text)


def test_white_space_only_pieces_are_dropped() -> None:
    assert split_text("") == [] and split_text(" \n ") == []
    assert split_text("a\n\n\n\n\nb", limit=2) == ["a", "b"]


def test_digest() -> None:
    one = "🟢 <b>Position closed</b>"
    assert digest([one]) == one
    texts = [f"message <b>{i}</b>" for i in range(3)]
    merged = digest(texts)
    assert merged.startswith("🗂 <b>3 messages</b>")
    assert merged.count(messages.DIGEST_SEPARATOR) == 3
    positions = [merged.index(t) for t in texts]
    assert positions == sorted(positions)
    assert_telegram_html(merged)
    with pytest.raises(ValueError):
        digest([])


def test_digests_pack_a_backlog_in_order_within_the_limit() -> None:
    texts = [f"{i:03d} " + "z" * 900 for i in range(20)]
    packed = digests(texts)
    assert all(len(d) <= 4096 for d in packed)
    assert len(packed) == 5  # four 904-character messages and their separators fit in 4096
    shown = "".join(packed)
    assert [int(n) for n in re.findall(r"(\d{3}) z", shown)] == list(range(20))
    huge = "w" * 5000
    packed = digests(["first", huge, "last"])
    assert packed == ["first", "w" * 4096, "w" * 904, "last"]


def test_digest_count_is_how_much_of_a_backlog_one_message_holds() -> None:
    texts = [f"{i:03d} " + "z" * 900 for i in range(6)]
    assert digest_count(texts) == 4  # as packed above
    assert len(digest(texts[:4])) <= 4096 < len(digest(texts[:5]))
    assert digest_count(texts[:2]) == 2
    assert digest_count(["short", "w" * 5000, "last"]) == 1  # stops before a text too long
    assert digest_count(["w" * 5000, "last"]) == 1  # which goes alone, to be split
    assert digest_count(["a", "b", "c"], limit=len(digest(["a", "b"]))) == 2
    with pytest.raises(ValueError):
        digest_count([])
