"""What NOTIFY tells the operator on Telegram (notify.md, "Telegram"): pure functions, no I/O.

Each event payload becomes one short HTML message (Telegram's `parse_mode="HTML"`), every
piece of outside text escaped with `html.escape`. The one entry point for events is

    render(envelope_type, payload, notify_holds=True) -> str | None

which answers None for events that should not produce a message (`position.updated`,
`account.updated`, `signal.received` — the analysis covers it —, `order.updated` unless
REJECTED, the `control.*` commands NOTIFY itself sends, and unknown types), and for HOLD and
REJECT analyses when `notify_holds` is False (`NOTIFY_HOLDS=false`).

Messages that do not come from an event: `alert` (a `POST /alert` or a Prometheus alert),
`alertmanager` (Alertmanager's webhook payload), `dead_letter`, `daily_summary`,
`trading_state_changed`.

Telegram takes at most 4096 characters per message: `split_text` cuts a text into pieces that
fit, on line boundaries, never inside a tag or an entity, closing the tags still open at a cut
and opening them again in the next piece. `digest` merges a backlog into one message;
`digest_count` says how much of a backlog one message holds, `digests` packs a backlog into as
few messages as fit.

Numbers: prices and quantities keep up to 8 significant digits, without thousands separators
(`60000`, `0.00001234`); amounts in USDT have two decimals and thousands separators
(`10,000.00`), signed when they are a profit or a loss (`+12.50`); ratios are percentages with
two decimals (`ROE +12.50%`).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

from shared.contracts import (
    AccountUpdated,
    Decision,
    EmergencyCloseTriggered,
    ExecutionAlertRaised,
    MessagePayload,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    Reason,
    RiskAlertCode,
    RiskAlertRaised,
    SignalAnalyzed,
    SignalReceived,
    TradeApproved,
    TradeRejected,
)

TELEGRAM_LIMIT = 4096
_T = TypeVar("_T")

PROFIT, LOSS, FLAT = "🟢", "🔴", "⚪"
SEVERITY_EMOJI = {"critical": "🚨", "error": "🚨", "warning": "⚠️", "info": "ℹ️",
                  "resolved": "✅"}
DECISION_EMOJI = {Decision.EXECUTE: "✅", Decision.HOLD: "⏸", Decision.REJECT: "⛔",
                  Decision.CLOSE: "❎"}
STATE_EMOJI = {"ACTIVE": "▶️", "REDUCING": "🔻", "HALTED": "⛔"}
CLOSE_REASONS = {
    "stop_loss": "stop-loss", "take_profit": "take-profit", "signal": "close signal",
    "manual": "manual close", "partial_take_profit": "partial take-profit",
    "emergency": "emergency close", "auto_close": "auto-close (held too long)",
    "liquidation": "liquidation", "closed_on_exchange": "closed on the exchange",
}
DIGEST_SEPARATOR = "\n\n➖➖➖\n\n"

# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Outside text, safe inside HTML (quotes too, so it may go into an attribute)."""
    return html.escape(str(value), quote=True)


def num(value: float | int | None, significant: int = 8) -> str:
    """A price or a quantity: up to `significant` digits, no exponent, no trailing zeros."""
    if value is None:
        return "—"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = min(max(0, significant - 1 - magnitude), 12)
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def usdt(value: float | None, *, signed: bool = False) -> str:
    """An amount in USDT: `10,000.00`, or `+12.50` / `-3.20` with `signed`."""
    if value is None:
        return "—"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def pct(fraction: float | None, *, signed: bool = False) -> str:
    """A ratio as a percentage: 0.1234 → `12.34%` (`+12.34%` with `signed`)."""
    if fraction is None:
        return "—"
    return f"{fraction * 100:+.2f}%" if signed else f"{fraction * 100:.2f}%"


def pnl_emoji(pnl: float) -> str:
    return PROFIT if pnl > 0 else LOSS if pnl < 0 else FLAT


def _side(side: str) -> str:
    side = str(side).lower()
    return {"long": "📈 LONG", "buy": "BUY", "short": "📉 SHORT", "sell": "SELL"}.get(
        side, esc(side.upper()))


def _severity(severity: str) -> str:
    return SEVERITY_EMOJI.get(str(severity).lower(), "🔔")


def _title(code: str) -> str:
    """`UNPROTECTED_POSITION_CLOSED` → `Unprotected position closed`."""
    return str(code).replace("_", " ").strip().capitalize()


def _value(value: Any) -> str:
    """A detail value as text: numbers formatted, everything else as given (not escaped)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | float):
        return num(value)
    return str(value)


def reason_line(reason: Reason) -> str:
    """`• <code>CODE</code> value 25 · limit 20 — message`."""
    parts = [f"<code>{esc(reason.code.value)}</code>"]
    if reason.value is not None:
        parts.append(f"value {num(reason.value)}")
    if reason.limit is not None:
        parts.append(f"limit {num(reason.limit)}")
    line = "• " + " · ".join(parts)
    if reason.message:
        line += f" — {esc(reason.message)}"
    return line


def _details(details: Mapping[str, Any], skip: Iterable[str] = ()) -> list[str]:
    skipped = set(skip)
    return [f"{esc(key)}: {esc(_value(value))}" for key, value in details.items()
            if key not in skipped]


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def signal_analyzed(analysis: SignalAnalyzed) -> str:
    """BRAIN's decision about an accepted signal, with its scores when there are any."""
    signal = analysis.signal
    decision = analysis.decision
    lines = [f"{DECISION_EMOJI.get(decision, '🧠')} <b>{esc(decision.value)}</b> · "
             f"<b>{esc(signal.symbol)}</b> {_side(signal.action.value)}",
             f"Signal: price {num(signal.price)} · confidence {pct(signal.confidence)} · "
             f"<i>{esc(signal.strategy)}</i>"
             + (f" · {esc(signal.timeframe)}" if signal.timeframe else "")]
    scores = analysis.scores
    if scores is not None:
        lines.append(f"Scores: Phoenix 95 {num(scores.phoenix95, 3)} · final "
                     f"{num(scores.final_confidence, 3)} · composite {num(scores.composite, 3)}"
                     f" (technical {num(scores.technical, 3)}, phoenix {num(scores.phoenix, 3)}"
                     f", market {num(scores.market, 3)})")
    if decision is Decision.EXECUTE:
        plan = f"Plan: entry {num(analysis.entry_price)} · {analysis.leverage}x"
        if analysis.stop_loss is not None:
            plan += f" · SL {num(analysis.stop_loss)}"
        if analysis.take_profit is not None:
            plan += f" · TP {num(analysis.take_profit)}"
        lines.append(plan)
        if analysis.sizing is not None:
            lines.append(f"Kelly {num(analysis.sizing.kelly, 3)} · margin "
                         f"{pct(analysis.sizing.margin_fraction)} of equity")
    lines.extend(reason_line(reason) for reason in analysis.reasons)
    return "\n".join(lines)


def trade_approved(message: TradeApproved) -> str:
    signal, verdict = message.signal, message.verdict
    if verdict.close:
        return (f"✅ <b>Approved</b> · close <b>{esc(signal.symbol)}</b>"
                f" ({esc(signal.strategy)})")
    lines = [f"✅ <b>Approved</b> · <b>{esc(signal.symbol)}</b> {_side(signal.action.value)}"
             + (" (reverses the open position)" if verdict.reverse else "")]
    order = verdict.order
    if order is not None:
        lines += [
            f"Qty {num(order.quantity)} @ {num(order.price)} · notional "
            f"{usdt(order.notional)} · margin {usdt(order.margin)} USDT · {order.leverage}x",
            f"SL {num(order.stop_loss)} · TP {num(order.take_profit)} · liq. "
            f"{num(order.liquidation_price)} ({pct(order.distance_to_liquidation)} away)",
            f"Risk at stop {usdt(order.risk_at_stop)} USDT",
        ]
    return "\n".join(lines)


def trade_rejected(message: TradeRejected) -> str:
    signal, verdict = message.signal, message.verdict
    stage = f" (stage {verdict.stage_failed})" if verdict.stage_failed else ""
    lines = [f"🚫 <b>Rejected by RISK</b>{stage} · <b>{esc(signal.symbol)}</b> "
             f"{_side(signal.action.value)}"]
    lines.extend(reason_line(reason) for reason in verdict.reasons)
    order = verdict.order
    if order is not None:
        lines.append(f"Would have been: qty {num(order.quantity)} @ {num(order.price)} · "
                     f"margin {usdt(order.margin)} USDT · {order.leverage}x")
    return "\n".join(lines)


def position_opened(position: PositionOpened) -> str:
    return "\n".join([
        f"🟦 <b>Position opened</b> · <b>{esc(position.symbol)}</b> {_side(position.side)}"
        f" {position.leverage}x",
        f"Entry {num(position.entry_price)} · qty {num(position.quantity)} · "
        f"margin {usdt(position.margin)} USDT",
        f"SL {num(position.stop_loss)} · TP {num(position.take_profit)}",
        f"Liquidation {num(position.liquidation_price)}",
    ])


def position_closed(position: PositionClosed) -> str:
    """A close; a partial take-profit (`remaining_quantity` above 0) says what remains."""
    emoji = pnl_emoji(position.realized_pnl)
    reason = CLOSE_REASONS.get(position.reason, position.reason)
    partial = position.remaining_quantity > 0
    head = "Partial take-profit" if position.reason == "partial_take_profit" else (
        "Position partly closed" if partial else "Position closed")
    lines = [f"{emoji} <b>{head}</b> · <b>{esc(position.symbol)}</b> {_side(position.side)}",
             f"Reason: {esc(reason)}",
             f"PnL <b>{usdt(position.realized_pnl, signed=True)} USDT</b> · "
             f"ROE {pct(position.roe, signed=True)}",
             f"Entry {num(position.entry_price)} → exit {num(position.exit_price)} · "
             f"qty {num(position.quantity)}"]
    if partial:
        lines.append(f"Remaining qty {num(position.remaining_quantity)}"
                     + (" · stop moved to entry" if position.reason == "partial_take_profit"
                        else ""))
    return "\n".join(lines)


def liquidation_alert(alert: RiskAlertRaised) -> str:
    critical = alert.code is RiskAlertCode.LIQUIDATION_CRITICAL
    head = "Liquidation CRITICAL" if critical else "Liquidation warning"
    symbol = f" · <b>{esc(alert.symbol)}</b>" if alert.symbol else ""
    lines = [f"{'🚨' if critical else '⚠️'} <b>{head}</b>{symbol}"]
    details = alert.details
    if "distance" in details:
        line = f"Distance to liquidation <b>{pct(_float(details['distance']))}</b>"
        if "entry_distance" in details:
            line += f" (was {pct(_float(details['entry_distance']))} at entry)"
        lines.append(line)
    if "price" in details or "liquidation_price" in details:
        lines.append(f"Mark {num(_float(details.get('price')))} · liquidation "
                     f"{num(_float(details.get('liquidation_price')))}")
    if len(lines) == 1:
        lines.append(esc(alert.message))
    return "\n".join(lines)


def trading_state_changed(previous: str | None, state: str, reason: str = "",
                          changed_by: str = "") -> str:
    state = str(state)
    lines = [f"{STATE_EMOJI.get(state, '🔁')} <b>Trading {esc(state)}</b>"
             + (f" (was {esc(previous)})" if previous else "")]
    if reason:
        lines.append(f"Reason: {esc(reason)}")
    if changed_by:
        lines.append(f"By: {esc(changed_by)}")
    return "\n".join(lines)


def risk_alert(alert: RiskAlertRaised) -> str:
    if alert.code is RiskAlertCode.TRADING_STATE_CHANGED:
        details = alert.details
        if "to" in details:
            return trading_state_changed(details.get("from"), str(details["to"]),
                                         str(details.get("reason") or ""),
                                         str(details.get("changed_by") or ""))
        return f"🔁 <b>Trading state changed</b>\n{esc(alert.message)}"
    if alert.code in (RiskAlertCode.LIQUIDATION_WARNING, RiskAlertCode.LIQUIDATION_CRITICAL):
        return liquidation_alert(alert)
    return _generic_alert(alert.code.value, alert.severity, alert.message, alert.symbol,
                          alert.details)


def emergency_close(event: EmergencyCloseTriggered) -> str:
    share = event.daily_pnl / event.day_start_equity if event.day_start_equity else None
    return "\n".join([
        "🚨 <b>EMERGENCY CLOSE</b>",
        f"Today's PnL <b>{usdt(event.daily_pnl, signed=True)} USDT</b> "
        f"({pct(share, signed=True)} of day-start equity {usdt(event.day_start_equity)})"
        f" reached the limit {usdt(event.threshold, signed=True)} USDT",
        "Every position is being closed at market; trading halts.",
    ])


def execution_alert(alert: ExecutionAlertRaised) -> str:
    return _generic_alert(alert.code, alert.severity, alert.message, alert.symbol,
                          alert.details)


def _generic_alert(code: str, severity: str, message: str, symbol: str | None,
                   details: Mapping[str, Any]) -> str:
    symbol_part = f" · <b>{esc(symbol)}</b>" if symbol else ""
    lines = [f"{_severity(severity)} <b>{esc(_title(code))}</b>{symbol_part}",
             f"<code>{esc(code)}</code> · {esc(str(severity).lower())}"]
    if message:
        lines.append(esc(message))
    lines.extend(_details(details))
    return "\n".join(lines)


def order_rejected(order: OrderUpdated) -> str:
    lines = [f"⛔ <b>Order rejected</b> · <b>{esc(order.symbol)}</b> {_side(order.side)} "
             f"{num(order.quantity)}" + (" (reduce-only)" if order.reduce_only else "")]
    if order.error:
        lines.append(f"Error: {esc(order.error)}")
    lines.append(f"Order <code>{esc(order.client_order_id)}</code>")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Messages that are not events
# ---------------------------------------------------------------------------------------------


def alert(title: str, severity: str, message: str) -> str:
    """A `POST /alert` or a Prometheus alert: `{severity, title, message}`."""
    lines = [f"{_severity(severity)} <b>{esc(title)}</b> · {esc(str(severity).lower())}"]
    if message:
        lines.append(esc(message))
    return "\n".join(lines)


def alertmanager(payload: Mapping[str, Any]) -> str:
    """Alertmanager's webhook payload (`version` 4: `status`, `alerts[]` with `labels`,
    `annotations`), one line group per alert; resolved alerts say so."""
    alerts: Sequence[Mapping[str, Any]] = payload.get("alerts") or []
    common = payload.get("commonLabels") or {}
    blocks = []
    for item in alerts or [{"status": payload.get("status", "firing"), "labels": common,
                            "annotations": payload.get("commonAnnotations") or {}}]:
        labels = item.get("labels") or {}
        annotations = item.get("annotations") or {}
        status = str(item.get("status") or payload.get("status") or "firing")
        severity = "resolved" if status == "resolved" else str(
            labels.get("severity") or common.get("severity") or "warning")
        title = str(labels.get("alertname") or annotations.get("summary") or "Alert")
        summary = annotations.get("summary") if annotations.get("summary") != title else None
        text = "\n".join(str(part) for part in (summary, annotations.get("description"))
                         if part)
        block = alert(title, severity, text)
        where = [f"{esc(key)}={esc(labels[key])}" for key in ("instance", "job", "symbol",
                                                             "queue") if labels.get(key)]
        if where:
            block += "\n" + " ".join(where)
        blocks.append(block)
    return "\n\n".join(blocks)


def dead_letter(queue: str, reason: str, *, message_type: str | None = None,
                message_id: str | None = None, count: int | None = None) -> str:
    lines = [f"☠️ <b>Dead letter</b> · queue <code>{esc(queue)}</code>"]
    if message_type or message_id:
        lines.append(" · ".join(part for part in (
            f"type <code>{esc(message_type)}</code>" if message_type else "",
            f"id <code>{esc(message_id)}</code>" if message_id else "") if part))
    lines.append(f"Reason: {esc(reason)}")
    if count is not None:
        lines.append(f"Deliveries: {count}")
    return "\n".join(lines)


def daily_summary(day: date, *, realized_pnl: float, trades: int, wins: int, equity: float,
                  day_start_equity: float | None = None,
                  open_positions: int | None = None) -> str:
    """The 00:00 UTC summary of `day`: PnL, trades, win rate, equity."""
    share = realized_pnl / day_start_equity if day_start_equity else None
    lines = [f"📊 <b>Daily summary</b> · {day.isoformat()}",
             f"{pnl_emoji(realized_pnl)} PnL <b>{usdt(realized_pnl, signed=True)} USDT</b>"
             + (f" ({pct(share, signed=True)})" if share is not None else ""),
             f"Trades {trades} · wins {wins} · win rate "
             f"{pct(wins / trades) if trades else '—'}",
             f"Equity {usdt(equity)} USDT"]
    if open_positions is not None:
        lines.append(f"Open positions {open_positions}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def _analysis(payload: MessagePayload, notify_holds: bool) -> str | None:
    analysis = _expect(payload, SignalAnalyzed)
    if not notify_holds and analysis.decision in (Decision.HOLD, Decision.REJECT):
        return None
    return signal_analyzed(analysis)


def _order(payload: MessagePayload, notify_holds: bool) -> str | None:
    order = _expect(payload, OrderUpdated)
    return order_rejected(order) if order.status.upper() == "REJECTED" else None


def _typed(model: type[Any], function: Callable[[Any], str]
           ) -> Callable[[MessagePayload, bool], str | None]:
    return lambda payload, _holds: function(_expect(payload, model))


def _silent(model: type[MessagePayload]) -> Callable[[MessagePayload, bool], str | None]:
    def silent(payload: MessagePayload, _holds: bool) -> None:
        _expect(payload, model)

    return silent


RENDERERS: dict[str, Callable[[MessagePayload, bool], str | None]] = {
    SignalReceived.message_type: _silent(SignalReceived),
    SignalAnalyzed.message_type: _analysis,
    TradeApproved.message_type: _typed(TradeApproved, trade_approved),
    TradeRejected.message_type: _typed(TradeRejected, trade_rejected),
    RiskAlertRaised.message_type: _typed(RiskAlertRaised, risk_alert),
    OrderUpdated.message_type: _order,
    PositionOpened.message_type: _typed(PositionOpened, position_opened),
    PositionUpdated.message_type: _silent(PositionUpdated),
    PositionClosed.message_type: _typed(PositionClosed, position_closed),
    AccountUpdated.message_type: _silent(AccountUpdated),
    EmergencyCloseTriggered.message_type: _typed(EmergencyCloseTriggered, emergency_close),
    ExecutionAlertRaised.message_type: _typed(ExecutionAlertRaised, execution_alert),
}


def render(envelope_type: str, payload: MessagePayload, *, notify_holds: bool = True
           ) -> str | None:
    """The Telegram message for one event, or None when it should not produce one.

    `notify_holds=False` mutes HOLD and REJECT analyses. A payload of another type than
    `envelope_type` names is a TypeError (a bug, not a message to skip)."""
    renderer = RENDERERS.get(envelope_type)
    if renderer is None:
        return None
    return renderer(payload, notify_holds)


def _expect(payload: object, model: type[_T]) -> _T:
    if not isinstance(payload, model):
        raise TypeError(f"expected a {model.__name__} payload, got {type(payload).__name__}")
    return payload


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Splitting and merging
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"<[^<>]*>|&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);|\n|[^<&\n]|[<&]")
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w-]*)")


def _tag(token: str) -> tuple[str, bool] | None:
    """(name, closing) for a tag token, None for text."""
    if len(token) < 3 or token[0] != "<":
        return None
    match = _TAG.match(token)
    if match is None:
        return None
    return match.group(2).lower(), bool(match.group(1))


def _closers(stack: Sequence[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _opener(stack: Sequence[tuple[str, str]]) -> str:
    return "".join(text for _, text in stack)


def split_text(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at the last line break that fits
    (at the last space for a single line too long, else anywhere between two characters),
    never inside a tag or an entity. Tags open at a cut are closed at the end of the piece
    and opened again at the start of the next. A text within the limit comes back whole;
    pieces with nothing but white space are dropped."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if len(text) <= limit:
        return [text] if text.strip() else []
    pieces: list[str] = []
    stack: list[tuple[str, str]] = []  # the tags open after the last token read
    opened: _Stack = ()  # the tags open where the current piece starts
    current: list[tuple[str, _Stack]] = []  # its tokens, each with the tags open after it
    length = 0  # len() of the current piece without its closing tags

    for unit in _TOKEN.findall(text):
        _track(stack, unit)
        state = tuple(stack)
        while current and length + len(unit) + len(_closers(state)) > limit:
            if unit == "\n" or (unit == " " and all(t != "\n" for t, _ in current[1:])):
                cut: int | None = len(current)  # the piece ends at the break just read
                unit = ""  # which goes with the cut
            else:
                cut = _cut(current)
            kept, rest = (current, []) if cut is None else (current[:cut], current[cut + 1:])
            end = kept[-1][1]
            piece = _opener(opened) + "".join(t for t, _ in kept).strip("\n") + _closers(end)
            if _visible(piece).strip():
                pieces.append(piece)
            opened, current = end, rest
            length = len(_opener(opened)) + sum(len(t) for t, _ in rest)
        if unit:
            current.append((unit, state))
            length += len(unit)
    if current:
        body = "".join(t for t, _ in current).strip("\n")
        piece = _opener(opened) + body + _closers(current[-1][1])
        if _visible(piece).strip():
            pieces.append(piece)
    return pieces


_Stack = tuple[tuple[str, str], ...]


def _track(stack: list[tuple[str, str]], token: str) -> None:
    """Keep `stack` (name, opening tag) up to date with one token."""
    tag = _tag(token)
    if tag is None:
        return
    name, closing = tag
    if not closing:
        if not token.endswith("/>"):
            stack.append((name, token))
        return
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][0] == name:
            del stack[i:]
            return


def _cut(tokens: Sequence[tuple[str, _Stack]]) -> int | None:
    """Where to cut the current piece: the last line break, else the last space (never at
    its very start, which would make no progress)."""
    for separator in ("\n", " "):
        for i in range(len(tokens) - 1, 0, -1):
            if tokens[i][0] == separator:
                return i
    return None


def _visible(text: str) -> str:
    return html.unescape(re.sub(r"<[^<>]*>", "", text))


def digest(texts: Sequence[str]) -> str:
    """Several messages as one (a backlog), under a header, with separators; one message
    comes back unchanged. The result may be longer than Telegram takes: see `digests`."""
    if not texts:
        raise ValueError("nothing to digest")
    if len(texts) == 1:
        return texts[0]
    return f"🗂 <b>{len(texts)} messages</b>" + DIGEST_SEPARATOR + DIGEST_SEPARATOR.join(texts)


def digest_count(texts: Sequence[str], limit: int = TELEGRAM_LIMIT) -> int:
    """How many of the first `texts` one digest of at most `limit` characters holds: at
    least one (a text too long on its own goes alone, to be split)."""
    if not texts:
        raise ValueError("nothing to digest")
    count = 1
    while count < len(texts) and len(digest(texts[:count + 1])) <= limit:
        count += 1
    return count


def digests(texts: Sequence[str], limit: int = TELEGRAM_LIMIT) -> list[str]:
    """A backlog packed, in order, into as few digests of at most `limit` characters as
    hold whole messages; a message too long on its own is split (`split_text`)."""
    out: list[str] = []
    rest = list(texts)
    while rest:
        count = digest_count(rest, limit)
        out.extend(split_text(digest(rest[:count]), limit))
        rest = rest[count:]
    return out
