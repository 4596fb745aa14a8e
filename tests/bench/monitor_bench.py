"""Benchmark (not a test) of EXECUTE's position monitor: ticks per second and tick-to-decision
latency with 500 open paper positions across the 10 default symbols.

    .venv/bin/python -m tests.bench.monitor_bench [--ticks N] [--json out.json]

Target (the issue): ≥ 20 000 ticks/s and p99 ≤ 5 ms.

What runs: the real PaperExchange, ExecutionEngine, AccountKeeper and Monitor, wired as
`services/execute/app.py` wires them (without the AMQP consumers, the outbox relay and the
periodic reconciliation: a steady state gives them nothing to do), on a temporary migrated
SQLite database, a Redis prefix of its own on localhost and a throwaway RabbitMQ vhost
(`rabbitmqctl add_vhost`), all removed at the end. 500 positions (50 per symbol; longs on
half the symbols, shorts on the others: the paper account is one-way) are opened through
`engine.open_position` with OrderPlans built by RISK's own `build_order`, each with its
stop-loss and take-profit resting (1 000 resting orders); this setup takes 30-40 s. The
monitor's housekeeping task runs alongside, as in the service (its `account.updated`
snapshot every ACCOUNT_UPDATE_INTERVAL_S, and the monitor's background `position.updated`
publishing once a second per symbol, go to the broker for real).

Then the steady state is measured: prices random-walk within ±BAND of where the positions
were opened, a band that triggers no stop, target, liquidation, partial take-profit or
emergency close (checked afterwards: nothing filled, nothing closed).

Scenarios
- direct: the hot path alone. `await monitor.on_tick(symbol, price, mark)` called in a loop,
  round-robin over the symbols, each call timed with perf_counter_ns (after `--warmup`
  untimed ticks). The loop yields to the event loop every `--batch` ticks, as `monitor.run()`
  does between XREADGROUP batches.
- redis-drain: N ticks XADDed to `market:stream` first (the feed's fields, untrimmed), then
  `monitor.run()` reads them through its consumer group (XREADGROUP 1 000 at a time, XACK):
  ticks/s from the start of `run()` to the last tick's decision; per-tick on_tick latency.
- redis-live (`--live-rate`, 0 to skip): a producer process XADDs at a fixed rate (in
  1 ms pipelines, as a feed does) while `monitor.run()` consumes; latency from XADD to the
  end of the tick's decision, across processes (time.time_ns). Informational: the exit
  status reflects the direct and redis-drain scenarios.

The Redis scenarios depend on redis-py's reply parser: with the `hiredis` package installed
redis-py parses in C, without it in pure Python, which costs far more than the monitor's own
work per tick. The header line says which one ran.

Exit status 0 when the direct and redis-drain scenarios meet the target, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import multiprocessing
import platform
import pstats
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.utils import HIREDIS_AVAILABLE

from services.execute.account import AccountKeeper
from services.execute.engine import PRODUCER, ExecutionEngine
from services.execute.exchange.paper import PaperExchange
from services.execute.monitor import GROUP, Monitor
from services.execute.settings import ExecuteSettings
from services.risk.orders import Market, build_order
from shared.brackets import BUNDLED
from shared.config import DEFAULT_SYMBOLS
from shared.db import create_engine, session_factory
from shared.db.migrate import upgrade
from shared.instruments import PAPER_PRECISION, round_to_tick
from shared.messaging import Broker
from shared.observability.logging import configure_logging
from shared.outbox import Outbox
from shared.redis import Keys, create_redis
from shared.tasks import stop_tasks
from tests.conftest import AMQP_URL, REDIS_URL, add_vhost, delete_vhost, drop_redis_prefix

TARGET_TICKS_PER_S = 20_000
TARGET_P99_MS = 5.0

SYMBOLS = list(DEFAULT_SYMBOLS)
# Roughly where these markets trade; only the relative moves matter.
BASE_PRICES = {
    "BTCUSDT": 65_000.0, "ETHUSDT": 3_200.0, "BNBUSDT": 580.0, "ADAUSDT": 0.45,
    "DOGEUSDT": 0.15, "XRPUSDT": 0.52, "SOLUSDT": 150.0, "AVAXUSDT": 28.0, "DOTUSDT": 6.5,
    "LINKUSDT": 14.0,
}
NOTIONAL_PER_POSITION = 2_000.0  # USDT; 50 per symbol → 100 000 USDT net per symbol
OPEN_SPREAD = 0.003  # entries spread over ±0.3 % of the base price
BAND = 0.008  # steady-state prices within ±0.8 %: stops and targets sit ≥ 1.7 % away
STEP = 0.0004  # random-walk step, relative
MARK_NOISE = 0.0001  # mark price vs last price, relative


# --- the rig -------------------------------------------------------------------------------


@dataclass
class Rig:
    settings: ExecuteSettings
    redis: Redis
    broker: Broker
    exchange: PaperExchange
    engine: ExecutionEngine
    account: AccountKeeper
    monitor: Monitor
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    triggered: dict[str, int] = field(default_factory=dict)
    run_starts: int = 0  # monitor.run() reloads once as it starts
    close: Callable[[], Awaitable[None]] | None = None


def bench_settings(url: str, vhost: str, prefix: str) -> ExecuteSettings:
    return ExecuteSettings(
        _env_file=None, exchange_mode="paper", market_data="none",
        amqp_url=AMQP_URL, amqp_vhost=vhost, redis_url=REDIS_URL, redis_prefix=prefix,
        database_url=url, amqp_reconnect_interval_s=0.5, reconcile_interval_s=3600,
        outbox_interval_s=5.0, log_level="WARNING",
        # Equity for 500 positions; with it the partial take-profit (3 % of equity) and the
        # emergency close (−5 % of equity) are far beyond what the price band can reach.
        paper_starting_balance=10_000_000.0,
    )


def plan_for(symbol: str, side: str, price: float, settings: ExecuteSettings) -> Any:
    """An OrderPlan as RISK builds it (services/risk/orders.py), for a fixed notional."""
    market = Market(PAPER_PRECISION[symbol], BUNDLED[symbol])
    return build_order(
        symbol=symbol, side=side, price=price, equity=settings.paper_starting_balance,
        leverage=settings.leverage, market=market, stop_loss_pct=settings.stop_loss_pct,
        take_profit_pct=settings.take_profit_pct, quantity=NOTIONAL_PER_POSITION / price)


def side_of(symbol: str) -> str:
    return "long" if SYMBOLS.index(symbol) % 2 == 0 else "short"


async def build(settings: ExecuteSettings, positions: int, housekeeping: bool) -> Rig:
    broker = Broker(settings, producer=PRODUCER)
    broker.start()
    await asyncio.wait_for(broker.wait_connected(), 30)
    redis = create_redis(settings)
    keys = Keys(settings.redis_prefix)
    db = create_engine(settings.database_url.get_secret_value())
    sessions = session_factory(db)
    outbox = Outbox(PRODUCER, broker, sessions)
    exchange = PaperExchange(settings, sessions)
    engine = ExecutionEngine(settings, exchange, redis, sessions, outbox)
    account = AccountKeeper(engine)
    monitor = Monitor(engine, account, broker, redis, keys)
    await exchange.start(settings.allowed_symbols, settings.leverage)

    rng = random.Random(95)
    started = time.perf_counter()
    for n in range(positions):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        tick = PAPER_PRECISION[symbol].price_tick
        price = round_to_tick(BASE_PRICES[symbol] * (1 + rng.uniform(-OPEN_SPREAD, OPEN_SPREAD)),
                              tick)
        await monitor.on_tick(symbol, price, price)
        opened = await engine.open_position(f"bench-{n:04d}",
                                            plan_for(symbol, side_of(symbol), price, settings))
        if opened is None:
            raise RuntimeError(f"position {n} on {symbol} was not opened")
    await monitor.reload()
    print(f"setup: {positions} positions opened in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)

    rig = Rig(settings, redis, broker, exchange, engine, account, monitor)
    # What a tick must never do in the steady state: counted, they cost nothing otherwise.
    for name in ("partial_take_profit", "emergency_close", "reload"):
        original = getattr(monitor, name)
        setattr(monitor, name, _counting(original, name, rig.triggered))
    engine.on_exchange_fill = _counting(engine.on_exchange_fill, "fill",  # type: ignore[method-assign]
                                        rig.triggered)
    # Wired as app.py wires it, once the positions exist (a reload per opening is O(n²)).
    engine.on_positions_changed = lambda positions: monitor.reload(positions=positions)
    if housekeeping:
        rig.tasks.append(asyncio.create_task(monitor.housekeeping(), name="housekeeping"))

    async def close() -> None:
        for task in rig.tasks:
            await stop_tasks(task)
        await asyncio.gather(*monitor._busy, return_exceptions=True)
        await engine.aclose()
        await exchange.close()
        await broker.close()
        await redis.aclose()
        await db.dispose()

    rig.close = close
    return rig


def _counting(method: Callable[..., Awaitable[Any]], name: str, counts: dict[str, int]
              ) -> Callable[..., Awaitable[Any]]:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] = counts.get(name, 0) + 1
        return await method(*args, **kwargs)

    return counted


# --- the ticks -----------------------------------------------------------------------------


@dataclass
class Ticks:
    """(symbol, last, mark) per tick, in flat arrays: 200 000 ticks add next to nothing for
    the garbage collector to walk (a list of tuples would, and lengthen its pauses)."""

    symbols: list[str]
    prices: array[float]
    marks: array[float]

    def __len__(self) -> int:
        return len(self.prices)

    def __iter__(self) -> Iterator[tuple[str, float, float]]:
        return zip(self.symbols, self.prices, self.marks, strict=True)

    def __getitem__(self, part: slice) -> Ticks:
        return Ticks(self.symbols[part], self.prices[part], self.marks[part])


def make_ticks(count: int, seed: int = 20_000) -> Ticks:
    """Round-robin over the symbols, each price a random walk reflected inside ±BAND of its
    base price and rounded to the symbol's tick; the mark a hair away from the last price."""
    rng = random.Random(seed)
    offset = dict.fromkeys(SYMBOLS, 0.0)
    ticks = Ticks([], array("d"), array("d"))
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        x = offset[symbol] + rng.uniform(-STEP, STEP)
        if abs(x) > BAND:
            x = math.copysign(2 * BAND - abs(x), x)
        offset[symbol] = x
        tick = PAPER_PRECISION[symbol].price_tick
        base = BASE_PRICES[symbol]
        price = round_to_tick(base * (1 + x), tick)
        mark = round_to_tick(base * (1 + x + rng.uniform(-MARK_NOISE, MARK_NOISE)), tick)
        ticks.symbols.append(symbol)
        ticks.prices.append(price)
        ticks.marks.append(mark)
    return ticks


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    ticks: int
    wall_s: float
    latencies_ns: array[int]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    gc: GcWatch | None = None

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = self._sorted()
        if not ordered:
            return float("nan")
        rank = max(1, math.ceil(q * len(ordered)))  # nearest rank
        return ordered[rank - 1] / 1e6

    def _sorted(self) -> list[int]:
        if not hasattr(self, "_ordered"):
            self._ordered = sorted(self.latencies_ns)
        return self._ordered

    def summary(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "wall_s": round(self.wall_s, 4),
            "ticks_per_s": round(self.ticks_per_s, 1),
            "latency_ms": {
                "mean": round(sum(self.latencies_ns) / len(self.latencies_ns) / 1e6, 4)
                if self.latencies_ns else None,
                "p50": round(self.percentile_ms(0.50), 4),
                "p99": round(self.percentile_ms(0.99), 4),
                "p999": round(self.percentile_ms(0.999), 4),
                "max": round(self.percentile_ms(1.0), 4),
            },
            "latency_measures": self.note, **self.extra,
            **({"gc": self.gc.summary()} if self.gc else {}),
        }


class GcWatch:
    """The garbage collector's collections during a scenario: a full (gen 2) collection stops
    the event loop for as long as it walks the heap, a usual cause of a latency tail."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[int]] = {0: [], 1: [], 2: []}
        self._started = 0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.pauses[info["generation"]].append(time.perf_counter_ns() - self._started)

    def __enter__(self) -> GcWatch:
        gc.collect()  # nothing left over from the previous scenario
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {f"gen{generation}": {"collections": len(pauses),
                                     "max_ms": round(max(pauses, default=0) / 1e6, 3)}
                for generation, pauses in self.pauses.items()}

    def line(self) -> str:
        return ", ".join(f"gen{g} {len(p)}× max {max(p, default=0) / 1e6:.1f} ms"
                         for g, p in self.pauses.items())


async def run_direct(rig: Rig, warmup: Ticks, ticks: Ticks, batch: int) -> Result:
    on_tick = rig.monitor.on_tick
    for symbol, price, mark in warmup:
        await on_tick(symbol, price, mark)
    await asyncio.sleep(0)
    latencies = array("q", bytes(8 * len(ticks)))
    clock = time.perf_counter_ns
    pause = asyncio.sleep
    started = clock()
    for n, (symbol, price, mark) in enumerate(ticks):
        before = clock()
        await on_tick(symbol, price, mark)
        latencies[n] = clock() - before
        if n % batch == batch - 1:
            await pause(0)
    wall = (clock() - started) / 1e9
    return Result("direct on_tick", len(ticks), wall, latencies,
                  note="one await monitor.on_tick(), perf_counter_ns")


async def xadd_all(redis: Redis, stream: str, ticks: Ticks, chunk: int = 5_000) -> None:
    for start in range(0, len(ticks), chunk):
        now_ms = str(int(time.time() * 1000))
        async with redis.pipeline(transaction=False) as pipe:
            for symbol, price, mark in ticks[start:start + chunk]:
                pipe.xadd(stream, {"symbol": symbol, "price": repr(price), "ts": now_ms,
                                   "mark_price": repr(mark)})
            await pipe.execute()


async def fresh_group(redis: Redis, stream: str) -> None:
    await redis.delete(stream)
    try:
        await redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def run_redis_drain(rig: Rig, ticks: Ticks) -> Result:
    """The ticks waiting in market:stream; monitor.run() reads them all."""
    monitor, redis = rig.monitor, rig.redis
    await fresh_group(redis, monitor.stream)
    loaded = time.perf_counter()
    await xadd_all(redis, monitor.stream, ticks)
    loading_s = time.perf_counter() - loaded

    latencies = array("q")
    done = asyncio.Event()
    original = monitor.on_tick
    clock = time.perf_counter_ns
    wanted = len(ticks)

    async def timed(symbol: str, price: float, mark_price: float | None = None) -> None:
        before = clock()
        await original(symbol, price, mark_price)
        latencies.append(clock() - before)
        if len(latencies) == wanted:
            done.set()

    monitor.on_tick = timed  # type: ignore[method-assign]
    started = clock()
    task = asyncio.create_task(monitor.run(), name="monitor")
    rig.run_starts += 1
    try:
        await asyncio.wait_for(done.wait(), timeout=max(120.0, wanted / 1_000))
        wall = (clock() - started) / 1e9
    finally:
        await stop_tasks(task)
        del monitor.on_tick
    pending = (await redis.xpending(monitor.stream, GROUP))["pending"]
    return Result("redis drain (run)", wanted, wall, latencies,
                  note="monitor.on_tick() inside monitor.run(), perf_counter_ns; ticks/s from "
                       "run() start (reload included) to the last decision",
                  extra={"xadd_preload_s": round(loading_s, 3), "left_pending": pending})


def _resp(*parts: bytes) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def produce(redis_url: str, stream: str, count: int, rate: float, seed: int,
            ready: Any, go: Any) -> None:
    """The live feed, in a process of its own: XADD `count` ticks at `rate`/s, a pipeline
    every millisecond, each tick stamped with time.time_ns() as its pipeline is sent. Raw
    RESP on a socket, encoded ahead, so that the producer takes as little CPU as it can from
    the monitor it measures (this machine may have few cores)."""
    url = urlsplit(redis_url)
    sock = socket.create_connection((url.hostname or "localhost", url.port or 6379), 10)
    sock.settimeout(None)  # blocking sends; replies read with MSG_DONTWAIT
    setup = b""
    if url.password:
        setup += b"*2\r\n" + _resp(b"AUTH", url.password.encode())
    if url.path.strip("/") not in ("", "0"):
        setup += b"*2\r\n" + _resp(b"SELECT", url.path.strip("/").encode())
    if setup:
        sock.sendall(setup)
        if b"-" in sock.recv(1024)[:1]:
            raise RuntimeError("producer: Redis refused AUTH or SELECT")
    heads = [b"*16\r\n" + _resp(b"XADD", stream.encode(), b"MAXLEN", b"~", b"100000", b"*",
                                  b"symbol", symbol.encode(), b"price", repr(price).encode(),
                                  b"mark_price", repr(mark).encode(), b"ts")
             for symbol, price, mark in make_ticks(count, seed)]
    ready.set()
    go.wait()
    started = time.perf_counter()
    sent, tail_of_replies = 0, b"\r\n"
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate) + 1)
        if due > sent:
            stamp = time.time_ns()
            tail = _resp(str(stamp // 1_000_000).encode(), b"ts_ns", str(stamp).encode())
            sock.sendall(b"".join(head + tail for head in heads[sent:due]))
            sent = due
        with contextlib.suppress(BlockingIOError):  # replies: read and dropped
            while reply := sock.recv(1 << 20, socket.MSG_DONTWAIT):
                if b"\r\n-" in tail_of_replies + reply:  # an error reply, e.g. -WRONGTYPE
                    raise RuntimeError(f"producer: Redis refused an XADD: {reply[:200]!r}")
                tail_of_replies = reply[-2:]
        time.sleep(0.001)
    sock.close()


async def run_redis_live(rig: Rig, count: int, rate: float) -> Result:
    """A producer process XADDs at `rate` while monitor.run() consumes: XADD → decision."""
    monitor, redis = rig.monitor, rig.redis
    await fresh_group(redis, monitor.stream)
    context = multiprocessing.get_context("spawn")
    ready, go = context.Event(), context.Event()
    producer = context.Process(target=produce, args=(
        rig.settings.redis_url.get_secret_value(), monitor.stream, count, rate, 7, ready, go),
        daemon=True)
    producer.start()
    if not await asyncio.to_thread(ready.wait, 120):
        producer.terminate()
        raise RuntimeError("the producer process did not start")

    e2e = array("q")
    done = asyncio.Event()
    original = monitor._tick_from  # the entry's fields carry the producer's stamp

    async def timed(fields: dict[str, str]) -> None:
        await original(fields)
        e2e.append(time.time_ns() - int(fields["ts_ns"]))
        if len(e2e) == count:
            done.set()

    monitor._tick_from = timed  # type: ignore[method-assign]
    task = asyncio.create_task(monitor.run(), name="monitor")
    rig.run_starts += 1
    await asyncio.sleep(0.5)  # run() has reloaded and is blocked in XREADGROUP
    go.set()
    started = time.perf_counter_ns()
    deadline = time.monotonic() + count / rate + 60
    try:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=0.5)
            if producer.exitcode not in (None, 0):
                raise RuntimeError(f"the producer process failed (exit {producer.exitcode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(e2e)} of {count} live ticks decided in time")
        wall = (time.perf_counter_ns() - started) / 1e9
    finally:
        await stop_tasks(task)
        del monitor._tick_from
        producer.join(10)
        if producer.is_alive():
            producer.terminate()
    return Result(f"redis live @{rate:,.0f}/s", count, wall, e2e,
                  note="XADD (producer process, time.time_ns) to the end of the tick's "
                       "decision in monitor.run(); ticks/s is bounded by the offered rate")


async def profile_direct(rig: Rig, ticks: Ticks, top: int) -> str:
    """on_tick under cProfile: where a tick's time goes, by function, own time first."""
    on_tick = rig.monitor.on_tick
    profiler = cProfile.Profile()
    profiler.enable()
    for symbol, price, mark in ticks:
        await on_tick(symbol, price, mark)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- the run -------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    header = (f"{'scenario':<22}{'ticks':>9}{'wall s':>9}{'ticks/s':>11}{'p50 ms':>9}"
              f"{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.scenario:<22}{r.ticks:>9,}{r.wall_s:>9.2f}{r.ticks_per_s:>11,.0f}"
              f"{r.percentile_ms(0.5):>9.3f}{r.percentile_ms(0.99):>9.3f}"
              f"{r.percentile_ms(0.999):>10.3f}{r.percentile_ms(1.0):>9.3f}")
    for r in results:
        if r.gc is not None:
            print(f"  gc during {r.scenario}: {r.gc.line()}")


def verdict(result: Result, rate_bound: bool = False) -> dict[str, Any]:
    fast = result.ticks_per_s >= TARGET_TICKS_PER_S * (0.98 if rate_bound else 1.0)
    prompt = result.percentile_ms(0.99) <= TARGET_P99_MS
    return {"ticks_per_s_met": fast, "p99_met": prompt, "met": fast and prompt}


async def main_async(args: argparse.Namespace, url: str, vhost: str, prefix: str
                     ) -> dict[str, Any]:
    settings = bench_settings(url, vhost, prefix)
    rig = await build(settings, args.positions, not args.no_housekeeping)
    results: list[Result] = []
    report: dict[str, Any] = {}
    try:
        ticks = make_ticks(args.ticks + args.warmup)
        warmup, ticks = ticks[:args.warmup], ticks[args.warmup:]
        if args.gc_freeze:  # what EXECUTE could do once started: gen 2 walks less
            gc.collect()
            gc.freeze()
        with GcWatch() as watch:
            direct = await run_direct(rig, warmup, ticks, args.batch)
        direct.gc = watch
        results.append(direct)
        report["direct"] = direct.summary() | verdict(direct)
        if not args.no_redis:
            with GcWatch() as watch:
                drain = await run_redis_drain(rig, ticks)
            drain.gc = watch
            results.append(drain)
            report["redis_drain"] = drain.summary() | verdict(drain)
            if args.live_rate > 0:
                try:
                    with GcWatch() as watch:
                        live = await run_redis_live(rig, args.live_ticks, args.live_rate)
                except (RuntimeError, TimeoutError) as exc:  # informational: reported
                    print(f"redis live scenario failed: {exc}", file=sys.stderr)
                    report["redis_live"] = {"error": str(exc), "met": False}
                else:
                    live.gc = watch
                    results.append(live)
                    report["redis_live"] = live.summary() | verdict(
                        live, rate_bound=args.live_rate >= TARGET_TICKS_PER_S)
        open_now = len(await rig.engine.open_positions())
        resting = sum(len(orders) for orders in rig.exchange._resting.values())
        report["steady_state"] = {
            "open_positions_after": open_now, "resting_orders_after": resting,
            "partial_take_profits": rig.triggered.get("partial_take_profit", 0),
            "emergency_closes": rig.triggered.get("emergency_close", 0),
            "exchange_fills": rig.triggered.get("fill", 0),
            "reloads_besides_run_start": rig.triggered.get("reload", 0) - rig.run_starts,
        }
        if args.profile:
            report["profile"] = await profile_direct(rig, make_ticks(args.profile, 1), 30)
    finally:
        assert rig.close is not None
        await rig.close()
    print()
    print(f"monitor benchmark: {args.positions} open paper positions, {len(SYMBOLS)} symbols, "
          f"loop {args.loop}, housekeeping {'off' if args.no_housekeeping else 'on'}, "
          f"{'gc frozen after setup, ' if args.gc_freeze else ''}"
          f"redis-py parser {'hiredis' if HIREDIS_AVAILABLE else 'pure Python (no hiredis)'}")
    print_table(results)
    steady = report["steady_state"]
    print(f"steady state kept: {steady}")
    print(f"target: ≥ {TARGET_TICKS_PER_S:,} ticks/s and p99 ≤ {TARGET_P99_MS} ms")
    for name in ("direct", "redis_drain", "redis_live"):
        if name in report:
            print(f"  {name:<12} {'MET' if report[name]['met'] else 'NOT MET'}")
    if "profile" in report:
        print(report["profile"])
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.monitor_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=200_000, help="ticks per scenario")
    parser.add_argument("--warmup", type=int, default=5_000, help="direct: untimed ticks first")
    parser.add_argument("--positions", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1_000,
                        help="direct: yield to the event loop every BATCH ticks")
    parser.add_argument("--live-rate", type=float, default=20_000,
                        help="redis-live: ticks/s offered by the producer (0: skip)")
    parser.add_argument("--live-ticks", type=int, default=100_000)
    parser.add_argument("--no-redis", action="store_true", help="the direct scenario only")
    parser.add_argument("--no-housekeeping", action="store_true",
                        help="without the monitor's housekeeping task")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after the setup (a possible start-up step of EXECUTE)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="uvloop is what uvicorn runs EXECUTE on (uvicorn[standard])")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="afterwards, N direct ticks under cProfile (top 30 by own time)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging("execute", level="WARNING", fmt="console")
    handler = logging.getLogger().handlers[0]
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)  # the table alone on stdout

    # A `kill` cleans up too: SystemExit unwinds through the finally blocks below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="p95bench-"))
    url = f"sqlite+aiosqlite:///{workdir / 'phoenix95.db'}"
    upgrade(url)  # before the event loop starts
    vhost = f"/p95bench-{uuid.uuid4().hex[:8]}"
    prefix = f"p95bench:{uuid.uuid4().hex[:8]}:"
    try:
        add_vhost(vhost)
        runner = asyncio.run
        if args.loop == "uvloop":
            import uvloop

            runner = uvloop.run  # type: ignore[assignment]
        report = runner(main_async(args, url, vhost, prefix))
    finally:
        asyncio.run(drop_redis_prefix(prefix))
        delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        report.pop("profile", None)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "execute monitor", "positions": args.positions,
            "symbols": SYMBOLS, "loop": args.loop, "python": platform.python_version(),
            "housekeeping": not args.no_housekeeping, "hiredis": HIREDIS_AVAILABLE,
            "gc_freeze": args.gc_freeze,
            "target": {"ticks_per_s": TARGET_TICKS_PER_S, "p99_ms": TARGET_P99_MS},
            **report,
        }, indent=2) + "\n")
        print(f"results written to {args.json}")
    met = all(report[name]["met"] for name in ("direct", "redis_drain") if name in report)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
