"""EXECUTE's live adapter (execute.md, "Exchange adapters") through the real ccxt against the
local imitation of Binance USDⓈ-M (tests/fakes/binance.py): signed requests, the parameters on
the wire, the start-up checks, and what timeouts, 5xx, rate limits and rejections become.

Conditional orders: since December 2025 Binance takes STOP_MARKET / TAKE_PROFIT_MARKET only on
its Algo Service, and ccxt sends them there (`POST /fapi/v1/algoOrder`), with our
`newClientOrderId` as `clientAlgoId` and our `stopPrice` as `triggerPrice`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from services.execute.exchange.base import (
    Balance,
    ExchangeUnavailable,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingNotAllowed,
)
from services.execute.exchange.binance import BinanceExchange
from services.execute.settings import ExecuteSettings
from tests.fakes.binance import API_KEY, SECRET, Failure, FakeBinance, brackets
from tests.integration.conftest import API_KEY as PHOENIX95_API_KEY

ORDER = "/fapi/v1/order"
ALGO_ORDER = "/fapi/v1/algoOrder"
MARGIN_TYPE = "/fapi/v1/marginType"
LEVERAGE = "/fapi/v1/leverage"
POSITION_MODE = "/fapi/v1/positionSide/dual"

BTC_BRACKETS = brackets((0, 50_000, 0.004, 0, 125), (50_000, 600_000, 0.005, 50, 100))
ENTRY = "p95-3f9a1c2b7d4e"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as binance:
        binance.add_symbol("BTCUSDT", tick="0.1", step="0.001", min_notional="100",
                           leverage_brackets=BTC_BRACKETS, price=60_000)
        binance.add_symbol("ETHUSDT", tick="0.01", step="0.001", min_notional="20",
                           leverage_brackets=brackets((0, 10_000, 0.005, 0, 100)), price=3_000)
        yield binance


def live_settings(fake: FakeBinance, **overrides: object) -> ExecuteSettings:
    values: dict[str, object] = {
        "exchange_mode": "live", "phoenix95_api_keys": PHOENIX95_API_KEY,
        "binance_api_key": API_KEY, "binance_secret": SECRET,
        "binance_api_base_url": fake.url, "exchange_timeout_s": 1.0,
        "allowed_symbols": "BTCUSDT,ETHUSDT",
    }
    return ExecuteSettings(_env_file=None, **(values | overrides))


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[BinanceExchange]:
    binance = BinanceExchange(live_settings(fake), fill_wait_s=2.0)
    # ccxt's rate limiter charges Binance's request weights (reading the position mode costs
    # 30, i.e. 1.5 s); it stays on where the tests build their own adapter, off here for speed.
    binance.exchange.enableRateLimit = False
    yield binance
    await binance.close()


@pytest.fixture
async def started(exchange: BinanceExchange) -> BinanceExchange:
    await exchange.start(["BTCUSDT", "ETHUSDT"], 20)
    return exchange


async def buy_btc(exchange: BinanceExchange, quantity: float = 0.012,
                  client_order_id: str = ENTRY):
    return await exchange.create_market_order(symbol="BTCUSDT", side=OrderSide.BUY,
                                              quantity=quantity,
                                              client_order_id=client_order_id)


def signed(request) -> bool:
    return request.signed and request.headers["X-MBX-APIKEY"] == API_KEY \
        and "signature" in request.params


# --- start-up ---------------------------------------------------------------------------------

async def test_start_checks_one_way_mode_then_sets_isolated_margin_and_leverage(fake):
    exchange = BinanceExchange(live_settings(fake))
    assert exchange.exchange.enableRateLimit  # as in production
    try:
        await exchange.start(["BTCUSDT", "ETHUSDT"], 20)
    finally:
        await exchange.close()

    [mode] = fake.received(POSITION_MODE)
    assert signed(mode) and mode.status == 200
    margin = fake.received(MARGIN_TYPE, "POST")
    leverage = fake.received(LEVERAGE, "POST")
    assert [(r.params["symbol"], r.params["marginType"]) for r in margin] == [
        ("BTCUSDT", "ISOLATED"), ("ETHUSDT", "ISOLATED")]
    assert [(r.params["symbol"], r.params["leverage"]) for r in leverage] == [
        ("BTCUSDT", "20"), ("ETHUSDT", "20")]
    assert all(signed(r) and r.status == 200 for r in [*margin, *leverage])
    assert fake.margin_types == {"BTCUSDT": "ISOLATED", "ETHUSDT": "ISOLATED"}
    assert fake.leverages == {"BTCUSDT": 20, "ETHUSDT": 20}
    # The mode is read before anything is changed.
    paths = [r.path for r in fake.requests]
    assert paths.index(POSITION_MODE) < paths.index(MARGIN_TYPE)


async def test_no_need_to_change_margin_type_counts_as_success(exchange, fake):
    fake.margin_types["BTCUSDT"] = "ISOLATED"  # already isolated: Binance answers -4046

    await exchange.start(["BTCUSDT", "ETHUSDT"], 20)

    btc = [r for r in fake.received(MARGIN_TYPE) if r.params["symbol"] == "BTCUSDT"]
    assert [r.status for r in btc] == [400]
    assert fake.leverages["BTCUSDT"] == 20  # and it went on to the leverage


async def test_each_symbol_is_set_up_once(started, fake):
    await started.start(["BTCUSDT", "ETHUSDT"], 20)

    assert len(fake.received(MARGIN_TYPE)) == 2
    assert len(fake.received(LEVERAGE)) == 2


async def test_hedge_mode_is_refused_with_a_clear_message(exchange, fake):
    fake.hedge_mode = True

    with pytest.raises(TradingNotAllowed) as refused:
        await exchange.start(["BTCUSDT"], 20)

    message = str(refused.value)
    assert "hedge mode" in message and "one-way mode" in message.lower()
    assert "Switch" in message  # says what to do
    assert not fake.received(MARGIN_TYPE) and not fake.received(LEVERAGE)


async def test_a_margin_type_binance_refuses_stops_the_start(exchange, fake):
    fake.open_position("BTCUSDT", "0.5", "59000", margin_type="CROSSED")

    with pytest.raises(TradingNotAllowed, match=r"BTCUSDT: isolated margin.*-4048"):
        await exchange.start(["BTCUSDT", "ETHUSDT"], 20)

    assert fake.margin_types["ETHUSDT"] == "ISOLATED"  # the others are still set up


async def test_keys_binance_refuses_at_start_say_so(fake):
    exchange = BinanceExchange(live_settings(fake, binance_secret="wrong-secret"))
    exchange.exchange.enableRateLimit = False
    try:
        with pytest.raises(TradingNotAllowed) as refused:
            await exchange.start(["BTCUSDT"], 20)
    finally:
        await exchange.close()
    assert "-1022" in str(refused.value) and "BINANCE_SECRET" in str(refused.value)
    assert "not-the-secret-of-this-key" not in str(refused.value)
    assert not fake.received(MARGIN_TYPE)


async def test_the_exchange_down_at_start_is_unavailable(exchange, fake):
    fake.fail("/fapi/v1/exchangeInfo", Failure.server_error(503))

    with pytest.raises(ExchangeUnavailable, match="load_markets"):
        await exchange.start(["BTCUSDT"], 20)


async def test_a_symbol_the_exchange_does_not_list_is_skipped(exchange, fake):
    await exchange.start(["BTCUSDT", "NOSUCHUSDT"], 20)

    assert [r.params["symbol"] for r in fake.received(MARGIN_TYPE)] == ["BTCUSDT"]
    with pytest.raises(OrderRejected, match="NOSUCHUSDT"):
        await exchange.create_market_order(symbol="NOSUCHUSDT", side=OrderSide.BUY,
                                           quantity=1, client_order_id="p95-x")
    assert not fake.received(ORDER)


async def test_testnet_is_ccxt_sandbox_mode_through_the_same_calls(fake):
    testnet = BinanceExchange(live_settings(fake, exchange_mode="testnet"))
    try:
        assert testnet.exchange.isSandboxModeEnabled
        await testnet.start(["BTCUSDT"], 20)
        order = await buy_btc(testnet)
    finally:
        await testnet.close()
    assert order.status is OrderStatus.FILLED
    assert fake.leverages == {"BTCUSDT": 20}


# --- entries ------------------------------------------------------------------------------------

async def test_a_market_entry_carries_our_client_id_and_comes_back_filled(started, fake):
    order = await buy_btc(started, quantity=0.0129)  # the step is 0.001

    [sent] = fake.received(ORDER, "POST")
    assert signed(sent) and sent.status == 200
    assert sent.params["newClientOrderId"] == ENTRY
    assert (sent.params["symbol"], sent.params["side"], sent.params["type"],
            sent.params["quantity"]) == ("BTCUSDT", "BUY", "MARKET", "0.012")
    assert "reduceOnly" not in sent.params
    assert order.client_order_id == ENTRY and order.symbol == "BTCUSDT"
    assert (order.side, order.type, order.status) == (
        OrderSide.BUY, OrderType.MARKET, OrderStatus.FILLED)
    assert (order.quantity, order.filled_quantity, order.average_price) == (0.012, 0.012, 60000)
    assert order.exchange_order_id == str(fake.order_by_client_id(ENTRY).order_id)
    assert not order.reduce_only and order.stop_price is None
    assert order.fee == pytest.approx(0.012 * 60000 * 0.0004)  # from the fill's commission


async def test_a_close_is_sent_reduce_only(started, fake):
    await buy_btc(started)

    close = await started.create_market_order(symbol="BTCUSDT", side=OrderSide.SELL,
                                              quantity=0.012, client_order_id="p95-close-1",
                                              reduce_only=True)

    sent = fake.received(ORDER, "POST")[-1]
    assert sent.params["reduceOnly"] == "true" and sent.params["side"] == "SELL"
    assert close.reduce_only and close.status is OrderStatus.FILLED
    assert await started.fetch_positions() == []


async def test_a_reduce_only_order_without_a_position_is_rejected(started, fake):
    with pytest.raises(OrderRejected) as rejected:
        await started.create_market_order(symbol="BTCUSDT", side=OrderSide.SELL,
                                          quantity=0.012, client_order_id="p95-close-2",
                                          reduce_only=True)
    assert rejected.value.code == "-2022"


async def test_a_market_order_answered_before_its_fill_is_asked_for_until_filled(
        started, fake):
    fake.market_fill_after_queries = 2  # answered NEW; filled on the second query

    order = await buy_btc(started)

    assert order.status is OrderStatus.FILLED and order.filled_quantity == 0.012
    queries = fake.received(ORDER, "GET")
    assert [q.params["origClientOrderId"] for q in queries] == [ENTRY, ENTRY]
    assert len(fake.received(ORDER, "POST")) == 1


async def test_a_market_order_not_filled_in_time_is_unknown_not_resent(fake):
    fake.market_fill_after_queries = 1000
    exchange = BinanceExchange(live_settings(fake), fill_wait_s=0.5)
    try:
        await exchange.start(["BTCUSDT"], 20)
        with pytest.raises(ExchangeUnavailable, match="not filled after"):
            await buy_btc(exchange)
    finally:
        await exchange.close()
    assert len(fake.received(ORDER, "POST")) == 1


# --- failures -----------------------------------------------------------------------------------

async def test_a_timeout_on_the_entry_is_unavailable_and_the_order_is_found_by_client_id(
        started, fake):
    # Binance took the order, the answer never came back.
    fake.fail(ORDER, Failure.timeout(10.0, processed=True), times=1, method="POST")

    began = time.monotonic()
    with pytest.raises(ExchangeUnavailable, match="RequestTimeout"):
        await buy_btc(started)
    assert time.monotonic() - began < 5  # the client's 1 s timeout, not the server's 10 s

    assert len(fake.orders) == 1  # exactly one order on the exchange
    found = await started.fetch_order(symbol="BTCUSDT", client_order_id=ENTRY)
    assert found is not None and found.client_order_id == ENTRY
    assert found.status is OrderStatus.FILLED and found.filled_quantity == 0.012
    assert len(fake.received(ORDER, "POST")) == 1  # resolved, never resent
    [query] = fake.received(ORDER, "GET")
    assert query.params["origClientOrderId"] == ENTRY and signed(query)


async def test_insufficient_margin_is_a_rejection_with_binances_code(started, fake):
    fake.wallet_balance = Decimal("10")  # 0.012 × 60 000 / 20 = 36 USDT of margin needed

    with pytest.raises(OrderRejected) as rejected:
        await buy_btc(started)

    assert rejected.value.code == "-2019"
    assert "Margin is insufficient" in str(rejected.value)
    assert fake.orders == {}


async def test_an_injected_margin_rejection_is_a_rejection(started, fake):
    fake.fail(ORDER, Failure.binance(-2019, "Margin is insufficient."), times=1, method="POST")

    with pytest.raises(OrderRejected) as rejected:
        await buy_btc(started)
    assert rejected.value.code == "-2019"


@pytest.mark.parametrize("failure", [
    Failure.rate_limited(),  # 429 with -1003
    Failure.binance(-1003, "Too many requests; current limit is 2400 requests per minute."),
    Failure.binance(-1007, "Timeout waiting for response from backend server. Send status "
                           "unknown; execution status unknown.", status=408),
    Failure.server_error(500),
    Failure.server_error(502),
    Failure.server_error(503),
], ids=["429-1003", "400-1003", "-1007", "500", "502", "503"])
async def test_rate_limits_and_server_errors_are_unavailable(started, fake, failure):
    fake.fail(ORDER, failure, times=1, method="POST")

    with pytest.raises(ExchangeUnavailable):
        await buy_btc(started)


async def test_a_resent_client_id_returns_the_order_binance_already_has(started, fake):
    first = await buy_btc(started)

    again = await buy_btc(started)

    assert [r.status for r in fake.received(ORDER, "POST")] == [200, 400]  # -4116
    assert again.exchange_order_id == first.exchange_order_id
    assert again.status is OrderStatus.FILLED
    assert len(fake.orders) == 1


async def test_an_order_below_the_step_is_rejected_before_sending(started, fake):
    with pytest.raises(OrderRejected):
        await buy_btc(started, quantity=0.0004)
    assert not fake.received(ORDER)


# --- protective orders --------------------------------------------------------------------------

async def test_stops_and_targets_are_reduce_only_on_the_mark_price(started, fake):
    await buy_btc(started)

    stop = await started.create_trigger_order(
        symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.012, stop_price=58000.04,
        type=OrderType.STOP_MARKET, client_order_id=f"{ENTRY}-sl")
    target = await started.create_trigger_order(
        symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.012, stop_price=63000,
        type=OrderType.TAKE_PROFIT_MARKET, client_order_id=f"{ENTRY}-tp")

    sent_stop, sent_target = fake.received(ALGO_ORDER, "POST")
    for sent, kind, client_id, trigger in (
            (sent_stop, "STOP_MARKET", f"{ENTRY}-sl", "58000"),
            (sent_target, "TAKE_PROFIT_MARKET", f"{ENTRY}-tp", "63000")):
        assert signed(sent) and sent.status == 200
        assert sent.params["type"] == kind and sent.params["algoType"] == "CONDITIONAL"
        assert sent.params["reduceOnly"] == "true"
        assert sent.params["workingType"] == "MARK_PRICE"
        assert sent.params["triggerPrice"] == trigger  # our stopPrice, to the tick
        assert sent.params["clientAlgoId"] == client_id
        assert (sent.params["side"], sent.params["quantity"]) == ("SELL", "0.012")
    assert len(fake.received(ORDER, "POST")) == 1  # only the entry
    assert (stop.type, stop.status, stop.stop_price, stop.reduce_only) == (
        OrderType.STOP_MARKET, OrderStatus.OPEN, 58000, True)
    assert (target.type, target.status, target.stop_price) == (
        OrderType.TAKE_PROFIT_MARKET, OrderStatus.OPEN, 63000)
    resting = await started.fetch_open_orders()
    assert {(o.client_order_id, o.type) for o in resting} == {
        (f"{ENTRY}-sl", OrderType.STOP_MARKET), (f"{ENTRY}-tp", OrderType.TAKE_PROFIT_MARKET)}
    assert [o.client_order_id for o in await started.fetch_open_orders("ETHUSDT")] == []


async def test_a_stop_that_would_trigger_at_once_is_rejected(started, fake):
    await buy_btc(started)

    with pytest.raises(OrderRejected) as rejected:
        await started.create_trigger_order(
            symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.012, stop_price=60500,
            type=OrderType.STOP_MARKET, client_order_id=f"{ENTRY}-sl")
    assert rejected.value.code == "-2021"


async def test_a_triggered_stop_reads_as_filled_at_its_fill(started, fake):
    await buy_btc(started)
    for kind, price, suffix in ((OrderType.STOP_MARKET, 58000, "sl"),
                                (OrderType.TAKE_PROFIT_MARKET, 63000, "tp")):
        await started.create_trigger_order(
            symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.012, stop_price=price,
            type=kind, client_order_id=f"{ENTRY}-{suffix}")

    [triggered] = fake.set_price("BTCUSDT", 57990, mark=57999.5)  # the mark crosses 58 000

    stop = await started.fetch_order(symbol="BTCUSDT", client_order_id=f"{ENTRY}-sl")
    assert stop is not None and triggered.client_algo_id == f"{ENTRY}-sl"
    assert (stop.status, stop.type, stop.filled_quantity, stop.average_price) == (
        OrderStatus.FILLED, OrderType.STOP_MARKET, 0.012, 57990)
    assert stop.stop_price == 58000 and stop.reduce_only
    assert stop.fee == pytest.approx(0.012 * 57990 * 0.0004)
    assert await started.fetch_positions() == []
    # The other one is cancelled; the exchange's own order for the stop is not ours to touch.
    await started.cancel_order(symbol="BTCUSDT", client_order_id=f"{ENTRY}-tp")
    assert fake.algo_by_client_id(f"{ENTRY}-tp").algo_status == "CANCELED"
    target = await started.fetch_order(symbol="BTCUSDT", client_order_id=f"{ENTRY}-tp")
    assert target is not None and target.status is OrderStatus.CANCELED


async def test_after_a_restart_a_stop_is_still_found_by_its_client_id(started, fake):
    await buy_btc(started)
    await started.create_trigger_order(
        symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.012, stop_price=58000,
        type=OrderType.STOP_MARKET, client_order_id=f"{ENTRY}-sl")
    restarted = BinanceExchange(live_settings(fake))
    try:
        await restarted.start(["BTCUSDT"], 20)
        stop = await restarted.fetch_order(symbol="BTCUSDT", client_order_id=f"{ENTRY}-sl")
        await restarted.cancel_order(symbol="BTCUSDT", client_order_id=f"{ENTRY}-sl")
    finally:
        await restarted.close()
    assert stop is not None and (stop.type, stop.status) == (
        OrderType.STOP_MARKET, OrderStatus.OPEN)
    assert fake.algo_by_client_id(f"{ENTRY}-sl").algo_status == "CANCELED"


# --- cancelling and reading ---------------------------------------------------------------------

async def test_an_order_is_found_before_start_too(started, fake):
    await buy_btc(started)
    fresh = BinanceExchange(live_settings(fake))  # markets not loaded yet
    try:
        found = await fresh.fetch_order(symbol="BTCUSDT", client_order_id=ENTRY)
    finally:
        await fresh.close()
    assert found is not None and found.status is OrderStatus.FILLED


async def test_cancelling_an_unknown_order_is_no_error(started, fake):
    await started.cancel_order(symbol="BTCUSDT", client_order_id="p95-never-sent")

    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert {r.path for r in deletes} == {ORDER, ALGO_ORDER}
    assert all(r.status == 400 and signed(r) for r in deletes)  # -2011 from both
    assert deletes[0].params["origClientOrderId"] == "p95-never-sent"
    assert deletes[1].params["clientAlgoId"] == "p95-never-sent"


async def test_cancelling_with_the_exchange_down_is_unavailable(started, fake):
    fake.fail(ORDER, Failure.server_error(503), method="DELETE")

    with pytest.raises(ExchangeUnavailable):
        await started.cancel_order(symbol="BTCUSDT", client_order_id="p95-anything")


async def test_an_unknown_client_id_is_none(started, fake):
    assert await started.fetch_order(symbol="BTCUSDT", client_order_id="p95-never-sent") is None

    queried = [r for r in fake.requests if r.method == "GET" and r.path in (ORDER, ALGO_ORDER)]
    assert [(r.path, r.status) for r in queried] == [(ORDER, 400), (ALGO_ORDER, 400)]  # -2013


async def test_reading_an_order_with_the_exchange_down_is_unavailable_not_none(started, fake):
    fake.fail(ORDER, Failure.timeout(10.0), method="GET")

    with pytest.raises(ExchangeUnavailable):
        await started.fetch_order(symbol="BTCUSDT", client_order_id=ENTRY)


# --- account ------------------------------------------------------------------------------------

async def test_positions_and_balance_are_mapped(started, fake):
    await buy_btc(started)
    await started.create_market_order(symbol="ETHUSDT", side=OrderSide.SELL, quantity=0.5,
                                      client_order_id="p95-eth-short")
    fake.set_price("BTCUSDT", 61000)
    fake.set_price("ETHUSDT", 2900)

    positions = {p.symbol: p for p in await started.fetch_positions()}
    balance = await started.fetch_balance()

    btc, eth = positions["BTCUSDT"], positions["ETHUSDT"]
    assert (btc.side, btc.quantity, btc.entry_price, btc.leverage) == ("long", 0.012, 60000, 20)
    assert btc.isolated_margin == pytest.approx(36)  # 0.012 × 60 000 / 20
    assert btc.mark_price == 61000 and btc.unrealized_pnl == pytest.approx(12)
    assert btc.liquidation_price == pytest.approx(57228.9, abs=0.1)
    assert (eth.side, eth.quantity, eth.entry_price, eth.leverage) == ("short", 0.5, 3000, 20)
    assert eth.unrealized_pnl == pytest.approx(50) and eth.isolated_margin == pytest.approx(75)
    assert eth.liquidation_price > 3000
    fees = 0.012 * 60000 * 0.0004 + 0.5 * 3000 * 0.0004
    assert balance == Balance(wallet_balance=pytest.approx(10_000 - fees),
                              unrealized_pnl=pytest.approx(62))
    assert balance.equity == pytest.approx(10_062 - fees)


async def test_no_positions_is_an_empty_list(started):
    assert await started.fetch_positions() == []
    assert (await started.fetch_balance()).wallet_balance == 10_000


async def test_ticks_trigger_nothing_here(started):
    assert await started.on_tick("BTCUSDT", 1.0, 1.0) == []


async def test_a_refused_read_is_unavailable(started, fake):
    fake.fail("/fapi/v3/positionRisk", Failure.binance(-1022, "Signature for this request is "
                                                              "not valid."))
    fake.fail(ORDER, Failure.binance(-1000, "An unknown error occured."), method="DELETE")

    with pytest.raises(ExchangeUnavailable, match="-1022"):
        await started.fetch_positions()
    with pytest.raises(ExchangeUnavailable, match="-1000"):
        await started.cancel_order(symbol="BTCUSDT", client_order_id="p95-anything")


async def test_the_key_and_secret_are_never_in_an_error(started, fake):
    fake.fail(ORDER, Failure.timeout(10.0), method="GET")
    fake.fail("/fapi/v3/account", Failure.binance(
        -2015, "Invalid API-key, IP, or permissions for action.", status=401))

    errors = []
    for call in (started.fetch_order(symbol="BTCUSDT", client_order_id=ENTRY),
                 started.fetch_balance()):
        with pytest.raises(Exception) as raised:
            await call
        errors.append(str(raised.value))

    assert "signature=***" in errors[0]
    [held] = fake.received(ORDER, "GET")
    assert held.params["signature"] not in errors[0]
    assert "-2015" in errors[1]
    for text in errors:
        assert API_KEY not in text and SECRET not in text
