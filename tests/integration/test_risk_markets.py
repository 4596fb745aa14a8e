"""RISK's market data (risk.md, "Liquidation price"): live mode through the real ccxt against a
local imitation of Binance USDⓈ-M (tests/fakes/binance.py); paper mode from the bundled tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from services.risk.markets import (
    DEFAULT_PRECISION,
    LiveCatalog,
    PaperCatalog,
    catalog_for,
    paper_market,
)
from services.risk.settings import RiskSettings
from shared.brackets import BUNDLED, FALLBACK, Bracket
from shared.config import DEFAULT_SYMBOLS, SecretMissingError
from shared.instruments import PAPER_PRECISION, Precision
from tests.fakes.binance import API_KEY, SECRET, Failure, FakeBinance, brackets
from tests.integration.conftest import API_KEY as PHOENIX95_API_KEY
from tests.integration.risk_fixtures import risk_settings, running_risk

EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
LEVERAGE_BRACKET = "/fapi/v1/leverageBracket"

# Deliberately unlike the bundled table and PAPER_PRECISION, so that a match proves a read.
BTC_BRACKETS = brackets((0, 100_000, 0.008, 0, 60), (100_000, 1_000_000, 0.012, 400, 30),
                        (1_000_000, 5_000_000, 0.03, 18_400, 10))
BTC_EXPECTED = (Bracket(0, 100_000, 0.008, 0, 60), Bracket(100_000, 1_000_000, 0.012, 400, 30),
                Bracket(1_000_000, 5_000_000, 0.03, 18_400, 10))
ETH_BRACKETS = brackets((0, 20_000, 0.006, 0, 80), (20_000, 200_000, 0.009, 60, 40))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as binance:
        binance.add_symbol("BTCUSDT", tick="0.5", step="0.002", min_notional="50",
                           leverage_brackets=BTC_BRACKETS)
        binance.add_symbol("ETHUSDT", tick="0.05", step="0.01", min_notional="25",
                           leverage_brackets=ETH_BRACKETS)
        # Listed by the exchange but not allowed: never asked for.
        binance.add_symbol("PEPEUSDT", tick="0.0000001", step="1", min_notional="5",
                           leverage_brackets=brackets((0, 5000, 0.02, 0, 25)))
        yield binance


def live_settings(fake: FakeBinance, **overrides: object) -> RiskSettings:
    values: dict[str, object] = {
        "exchange_mode": "live", "phoenix95_api_keys": PHOENIX95_API_KEY,
        "binance_api_key": API_KEY, "binance_secret": SECRET,
        "binance_api_base_url": fake.url, "exchange_timeout_s": 1.0,
        "allowed_symbols": "BTCUSDT,ETHUSDT",
    }
    return RiskSettings(_env_file=None, **(values | overrides))


@pytest.fixture
async def catalog(fake: FakeBinance) -> AsyncIterator[LiveCatalog]:
    settings = live_settings(fake)
    live = catalog_for(settings)
    assert isinstance(live, LiveCatalog)
    yield live
    await live.close()


# --- reading through ccxt ------------------------------------------------------------------

async def test_precision_and_brackets_come_from_the_exchange(catalog, fake):
    await catalog.load()

    btc, eth = catalog.market_for("BTCUSDT"), catalog.market_for("ETHUSDT")
    assert btc.precision == Precision(price_tick=0.5, quantity_step=0.002, min_notional=50)
    assert btc.brackets == BTC_EXPECTED
    assert eth.precision == Precision(price_tick=0.05, quantity_step=0.01, min_notional=25)
    assert eth.brackets == (Bracket(0, 20_000, 0.006, 0, 80),
                            Bracket(20_000, 200_000, 0.009, 60, 40))
    # Only USDⓈ-M endpoints: no spot, margin (sapi) or coin-M (dapi) calls.
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", EXCHANGE_INFO), ("GET", LEVERAGE_BRACKET)]


async def test_the_bracket_request_is_signed_with_the_api_key(catalog, fake):
    await catalog.load()

    [request] = fake.received(LEVERAGE_BRACKET)
    assert request.headers["X-MBX-APIKEY"] == API_KEY
    assert {"timestamp", "signature"} <= set(request.params)
    assert request.signed and request.status == 200
    [public] = fake.received(EXCHANGE_INFO)
    assert "X-MBX-APIKEY" not in public.headers and "signature" not in public.params


async def test_a_wrong_secret_is_refused_and_the_bundled_brackets_are_used(fake):
    live = catalog_for(live_settings(fake, binance_secret="wrong-secret"))
    try:
        await live.load()
    finally:
        await live.close()

    [refused] = fake.received(LEVERAGE_BRACKET)
    assert (refused.status, refused.signed) == (400, False)
    assert "-1022" in (live.last_error or "")
    btc = live.market_for("BTCUSDT")
    assert btc.brackets == BUNDLED["BTCUSDT"]
    assert btc.precision.price_tick == 0.5  # the public part was still read


async def test_a_server_error_falls_back_to_the_bundled_table(catalog, fake):
    fake.fail(EXCHANGE_INFO, Failure.server_error(503))

    await catalog.load()

    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert catalog.market_for(symbol) == paper_market(symbol)
    assert catalog.market_for("BTCUSDT").brackets == BUNDLED["BTCUSDT"]
    assert catalog.market_for("BTCUSDT").precision == PAPER_PRECISION["BTCUSDT"]
    assert "load_markets" in (catalog.last_error or "")
    assert not fake.received(LEVERAGE_BRACKET)


async def test_a_timeout_falls_back_to_the_bundled_brackets(catalog, fake):
    fake.fail(LEVERAGE_BRACKET, Failure.timeout(10.0))

    started = time.monotonic()
    await catalog.load()

    assert time.monotonic() - started < 5  # the client's 1 s timeout, not the server's 10 s
    assert "RequestTimeout" in (catalog.last_error or "")
    assert catalog.market_for("BTCUSDT").brackets == BUNDLED["BTCUSDT"]
    assert catalog.market_for("BTCUSDT").precision.quantity_step == 0.002


async def test_the_signature_is_left_out_of_the_recorded_error(catalog, fake):
    fake.fail(LEVERAGE_BRACKET, Failure.timeout(10.0))
    await catalog.load()

    [held] = fake.received(LEVERAGE_BRACKET)
    assert held.params["signature"] not in (catalog.last_error or "")
    assert "signature=***" in (catalog.last_error or "")


async def test_a_symbol_allowed_after_start_is_read_without_waiting_for_the_refresh(fake):
    live = catalog_for(live_settings(fake, allowed_symbols="BTCUSDT"))
    try:
        await live.load()
        assert live.market_for("ETHUSDT") == paper_market("ETHUSDT")  # not read yet
        assert live.market_for("NOSUCHUSDT") == paper_market("NOSUCHUSDT")
        await live.load()  # what the refresh task does next
    finally:
        await live.close()
    assert live.market_for("ETHUSDT").precision.price_tick == 0.05
    assert "NOSUCHUSDT" not in live.symbols
    assert len(fake.received(EXCHANGE_INFO)) == 2


async def test_a_rate_limit_falls_back_to_the_bundled_brackets(catalog, fake):
    fake.fail(LEVERAGE_BRACKET, Failure.rate_limited())

    await catalog.load()

    assert "DDoSProtection" in (catalog.last_error or "")
    assert catalog.market_for("ETHUSDT").brackets == BUNDLED["ETHUSDT"]


async def test_a_failed_refresh_keeps_what_was_read(catalog, fake):
    await catalog.load()
    fake.fail(EXCHANGE_INFO, Failure.server_error(502))

    await catalog.load(force=True)

    assert len(fake.received(EXCHANGE_INFO)) == 2
    assert catalog.market_for("BTCUSDT").brackets == BTC_EXPECTED
    assert catalog.market_for("BTCUSDT").precision.price_tick == 0.5


async def test_a_failed_start_is_retried_and_then_reads_the_exchange(fake):
    live = catalog_for(live_settings(fake, market_refresh_s=0.2))
    fake.fail(EXCHANGE_INFO, Failure.server_error(503), times=1)
    try:
        await live.load()
        assert live.market_for("BTCUSDT").brackets == BUNDLED["BTCUSDT"]
        await asyncio.sleep(0.25)
        await live.load()
    finally:
        await live.close()
    assert live.market_for("BTCUSDT").brackets == BTC_EXPECTED


async def test_the_exchange_is_read_at_most_once_per_refresh_interval(catalog, fake):
    for _ in range(3):
        await catalog.load()
    assert len(fake.received(EXCHANGE_INFO)) == 1
    assert len(fake.received(LEVERAGE_BRACKET)) == 1


async def test_a_symbol_the_exchange_does_not_list_gets_the_paper_tables(fake):
    live = catalog_for(live_settings(fake, allowed_symbols="BTCUSDT,DOGEUSDT,NOSUCHUSDT"))
    try:
        await live.load()
    finally:
        await live.close()
    assert live.market_for("BTCUSDT").brackets == BTC_EXPECTED
    assert live.market_for("DOGEUSDT") == paper_market("DOGEUSDT")
    assert live.market_for("NOSUCHUSDT").brackets == FALLBACK
    assert live.market_for("NOSUCHUSDT").precision == DEFAULT_PRECISION


async def test_the_api_key_and_secret_are_not_in_the_catalog_status(catalog, fake):
    fake.fail(LEVERAGE_BRACKET, Failure.binance(-2015, "Invalid API-key, IP, or permissions "
                                                       "for action.", status=401))
    await catalog.load()
    described = repr(catalog.describe())
    assert "-2015" in described
    assert API_KEY not in described and SECRET not in described


# --- paper mode and the choice of catalog ---------------------------------------------------

async def test_paper_mode_uses_the_bundled_table():
    paper = catalog_for(RiskSettings(_env_file=None))
    assert isinstance(paper, PaperCatalog)
    await paper.load(DEFAULT_SYMBOLS)
    for symbol in DEFAULT_SYMBOLS:
        market = paper.market_for(symbol)
        assert market.brackets == BUNDLED[symbol]
        assert market.precision == PAPER_PRECISION[symbol]
    assert paper.market_for("PEPEUSDT").brackets == FALLBACK
    assert paper.market_for("PEPEUSDT").precision == DEFAULT_PRECISION


async def test_testnet_uses_ccxt_sandbox_and_the_base_url(fake):
    settings = live_settings(fake, exchange_mode="testnet")
    testnet = catalog_for(settings)
    assert isinstance(testnet, LiveCatalog)
    try:
        exchange = testnet.exchange
        assert exchange.isSandboxModeEnabled
        assert exchange.urls["api"]["public"].startswith("https://testnet.binance.vision")
        assert exchange.urls["api"]["fapiPrivate"] == f"{fake.url}/fapi/v1"
        await testnet.load()
    finally:
        await testnet.close()
    assert testnet.market_for("BTCUSDT").brackets == BTC_EXPECTED


@pytest.mark.parametrize("mode", ["live", "testnet"])
@pytest.mark.parametrize("missing", ["binance_api_key", "binance_secret"])
def test_live_and_testnet_refuse_to_start_without_the_exchange_keys(mode, missing):
    values = {"exchange_mode": mode, "phoenix95_api_keys": PHOENIX95_API_KEY,
              "binance_api_key": API_KEY, "binance_secret": SECRET}
    with pytest.raises(SecretMissingError, match=missing.upper()):
        RiskSettings(_env_file=None, **(values | {missing: "change-me"}))
    RiskSettings(_env_file=None, **values)  # both given: fine


def test_paper_mode_needs_no_exchange_keys_and_drops_placeholders():
    settings = RiskSettings(_env_file=None, binance_api_key="change-me")
    assert settings.binance_api_key is None and settings.binance_secret is None


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://proxy.example", "http://"])
def test_the_base_url_must_be_an_http_url(url):
    with pytest.raises(ValidationError, match="BINANCE_API_BASE_URL"):
        RiskSettings(_env_file=None, binance_api_base_url=url)


async def test_the_base_url_keeps_a_proxy_path_and_moves_only_usdm_endpoints():
    live = catalog_for(RiskSettings(
        _env_file=None, exchange_mode="live", phoenix95_api_keys=PHOENIX95_API_KEY,
        binance_api_key=API_KEY, binance_secret=SECRET,
        binance_api_base_url="https://proxy.example/binance/"))
    assert isinstance(live, LiveCatalog)
    urls = live.exchange.urls["api"]
    await live.close()
    assert urls["fapiPrivate"] == "https://proxy.example/binance/fapi/v1"
    assert urls["fapiPublicV2"] == "https://proxy.example/binance/fapi/v2"
    assert urls["fapiData"] == "https://proxy.example/binance/futures/data"
    assert urls["sapi"] == "https://api.binance.com/sapi/v1"


def test_the_exchange_secrets_are_masked_in_logs():
    settings = RiskSettings(_env_file=None, exchange_mode="live",
                            phoenix95_api_keys=PHOENIX95_API_KEY, binance_api_key=API_KEY,
                            binance_secret=SECRET)
    assert {API_KEY, SECRET} <= set(settings.secret_values())


# --- through the RISK app ---------------------------------------------------------------------

@pytest.fixture
def make_live_risk(vhost, redis_prefix, sqlite_url, amqp, fake):
    def factory(**overrides):
        settings = risk_settings(
            vhost, redis_prefix, sqlite_url, exchange_mode="live",
            binance_api_key=API_KEY, binance_secret=SECRET, binance_api_base_url=fake.url,
            exchange_timeout_s=1.0, **overrides)
        return running_risk(settings)

    return factory


CHECK = {"symbol": "BTCUSDT", "side": "long", "price": 60000, "quantity": 2, "equity": 10000}


async def test_check_in_live_mode_uses_the_exchange_bracket(make_live_risk, fake):
    async with make_live_risk() as risk:
        response = await risk.client.post("/check", json=CHECK,
                                          headers={"X-API-Key": PHOENIX95_API_KEY})
        status = await risk.status()

    assert response.status_code == 200
    order = response.json()["order"]
    # notional 120 000 is in the fake's second bracket (MMR 0.012, cum 400), not the bundled
    # one (0.005, 50): LP = (6000 + 400 − 120 000) / (2 × 0.012 − 2) = 57 489.88 → tick 0.5
    assert (order["maintenance_margin_rate"], order["maintenance_amount"]) == (0.012, 400)
    assert order["liquidation_price"] == 57490.0
    assert fake.received(LEVERAGE_BRACKET)[0].headers["X-MBX-APIKEY"] == API_KEY
    assert status["market_data"]["source"] == "exchange"
    assert status["market_data"]["symbols"]["BTCUSDT"]["brackets_read_at"] is not None


async def test_check_in_live_mode_with_the_exchange_down_uses_the_bundled_bracket(
        make_live_risk, fake):
    fake.fail(EXCHANGE_INFO, Failure.server_error(503))
    async with make_live_risk() as risk:
        response = await risk.client.post("/check", json=CHECK,
                                          headers={"X-API-Key": PHOENIX95_API_KEY})

    assert response.status_code == 200
    order = response.json()["order"]
    assert (order["maintenance_margin_rate"], order["maintenance_amount"]) == (0.005, 50)
    assert order["liquidation_price"] == pytest.approx(57261.3, abs=0.1)
