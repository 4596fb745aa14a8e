"""Accepting a signal: claim it once, analyse it, store it, publish it with confirms.

The row is written before the publish and marked published after it (a transactional
outbox): if the process dies in between, the outbox relay publishes it again at start-up or
on its next round, under the same message ids, so consumers see it once. Rows are inserted
in batches (a group commit); marks and `signal:stream` entries are written in batches too, off
the webhook's path: a mark lost in a crash only makes the relay re-send, harmlessly.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.brain.analysis import analyze, to_signal
from services.brain.batching import Batcher, BatchInserter
from services.brain.context import AccountContext
from services.brain.intake import Alert, idempotency_key, signal_id_for, stored_key
from services.brain.metrics import SIGNAL_SCORE, SIGNALS
from services.brain.models import SignalRecord
from services.brain.settings import BrainSettings
from shared.contracts import Decision, Envelope, Signal, SignalAnalyzed, SignalReceived
from shared.messaging import Broker, topology
from shared.observability.logging import bind_correlation_id, get_logger
from shared.redis import Keys

log = get_logger(__name__)

PRODUCER = "brain"
SIGNAL_STREAM_MAXLEN = 10_000

# Deletes a claim only if it is still ours (a later claimant's must survive).
_RELEASE_CLAIM = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Accepted:
    signal_id: str
    decision: Decision


@dataclass(frozen=True)
class Duplicate:
    signal_id: str


def _message_id(signal_id: str, message_type: str) -> str:
    return str(uuid.uuid5(uuid.UUID(signal_id), message_type))


def envelopes_of(analysis: SignalAnalyzed) -> list[tuple[Envelope, str, str]]:
    """(envelope, exchange, routing key) for both messages of a signal; ids are deterministic."""
    signal = analysis.signal
    received = Envelope.wrap(
        SignalReceived(signal=signal), producer=PRODUCER, correlation_id=signal.signal_id,
        message_id=_message_id(signal.signal_id, SignalReceived.message_type),
    )
    analysed = Envelope.wrap(
        analysis, producer=PRODUCER, correlation_id=signal.signal_id,
        causation_id=received.message_id,
        message_id=_message_id(signal.signal_id, SignalAnalyzed.message_type),
    )
    routing_key = (
        topology.SIGNAL_PROCESS
        if analysis.decision in (Decision.EXECUTE, Decision.CLOSE)
        else topology.SIGNAL_HOLD
    )
    return [
        (received, topology.TRADING_SIGNALS.name, f"signal.received.{signal.symbol}"),
        (analysed, topology.ANALYSIS.name, routing_key),
    ]


class SignalPipeline:
    def __init__(
        self,
        settings: BrainSettings,
        redis: Redis,
        broker: Broker,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.broker = broker
        self.sessions = sessions
        self.context = AccountContext(
            redis, self.keys, settings.positions_cache_s, settings.performance_cache_s
        )
        self._release_claim = redis.register_script(_RELEASE_CLAIM)
        self._signals = BatchInserter(sessions, SignalRecord.__table__)
        # Published, to be streamed and marked published: many in one round trip each.
        self._published: Batcher[SignalAnalyzed] = Batcher(self._record_published,
                                                           "published-signals")

    async def analyze(self, alert: Alert, signal_id: str | None = None) -> SignalAnalyzed:
        signal = to_signal(alert, signal_id or "", datetime.now(UTC))
        return analyze(
            signal, await self.context.open_positions(), await self.context.performance(),
            self.settings,
        )

    async def accept(self, alert: Alert, raw: dict[str, Any], source_ip: str | None
                     ) -> Accepted | Duplicate:
        received_at = datetime.now(UTC)
        key = idempotency_key(alert)
        claim_s = key.claim_s(self.settings.dedupe_window_s)
        stored = stored_key(key, received_at, claim_s)
        signal = to_signal(alert, signal_id_for(stored), received_at)
        claim = self.keys("dedupe", key.key)
        if not await self.redis.set(claim, signal.signal_id, nx=True, ex=claim_s):
            return Duplicate(await self.redis.get(claim) or signal.signal_id)
        with bind_correlation_id(correlation_id=signal.signal_id):
            return await self._process(alert, raw, source_ip, claim, stored, signal)

    async def _process(
        self, alert: Alert, raw: dict[str, Any], source_ip: str | None, claim: str,
        stored: str, signal: Signal,
    ) -> Accepted | Duplicate:
        """Everything after the claim. Until the analysis is sent, a failure is undone so that
        TradingView's re-send starts afresh."""
        signal_id = signal.signal_id
        stored_row = False
        try:
            analysis = analyze(
                signal, await self.context.open_positions(), await self.context.performance(),
                self.settings,
            )
            received, analysed = envelopes_of(analysis)
            try:
                await self._store(analysis, stored, raw, source_ip)
            except IntegrityError:
                # Redis lost the claim (restart, eviction); the table still remembers.
                log.info("duplicate caught by the signals table", signal_id=signal_id)
                return Duplicate(signal_id)
            stored_row = True
            await self.broker.publish(*received)
        except BaseException:
            await self._undo(claim, signal_id, stored_row)
            raise
        # Past this point the analysis may reach RISK even if its confirm never comes back:
        # keep the row and the claim. A failure answers 503, TradingView's re-send is a
        # duplicate, and the outbox relay publishes the analysis again under the same ids.
        await self.broker.publish(*analysed)

        self._published.add(analysis)
        SIGNALS.labels(analysis.decision.value).inc()
        if analysis.scores is not None:
            SIGNAL_SCORE.observe(analysis.scores.phoenix95)
        log.info("signal accepted", signal_id=signal_id, symbol=alert.symbol,
                 action=alert.action.value, decision=analysis.decision.value)
        return Accepted(signal_id, analysis.decision)

    async def _store(
        self, analysis: SignalAnalyzed, stored: str, raw: dict[str, Any], source_ip: str | None
    ) -> None:
        signal = analysis.signal
        await self._signals.insert(dict(
            signal_id=signal.signal_id,
            idempotency_key=stored,
            symbol=signal.symbol,
            action=signal.action.value,
            price=signal.price,
            strategy=signal.strategy,
            timeframe=signal.timeframe,
            alert_id=signal.alert_id,
            sent_at=signal.sent_at,
            received_at=signal.received_at,
            source_ip=source_ip,
            decision=analysis.decision.value,
            phoenix95_score=analysis.scores.phoenix95 if analysis.scores else None,
            raw=raw,
            analysis=analysis.model_dump(mode="json"),
        ))

    async def _publish(self, analysis: SignalAnalyzed) -> None:
        """The received event first, the analysis last: if the first fails, RISK saw nothing."""
        for message in envelopes_of(analysis):
            await self.broker.publish(*message)

    async def _undo(self, claim: str, signal_id: str, stored_row: bool) -> None:
        """Leave nothing half-done: drop the row and free the claim for TradingView's re-send.

        Only while nothing reached RISK. If the database is gone too, the row stays
        unpublished and the outbox relay sends it.
        """
        try:
            if stored_row:
                async with self.sessions.begin() as session:
                    await session.execute(
                        delete(SignalRecord).where(SignalRecord.signal_id == signal_id)
                    )
            await self._release_claim(keys=[claim], args=[signal_id])
        except Exception as exc:
            log.error("could not undo a failed signal", signal_id=signal_id, error=str(exc))

    async def _mark_published(self, signal_ids: list[str]) -> None:
        try:
            async with self.sessions.begin() as session:
                await session.execute(
                    update(SignalRecord)
                    .where(SignalRecord.signal_id.in_(signal_ids))
                    .values(published_at=datetime.now(UTC))
                )
        except Exception as exc:
            # Published already; the relay will re-send them under the same ids, harmlessly.
            log.warning("published signals not marked", count=len(signal_ids), error=str(exc))

    async def _record_published(self, published: list[SignalAnalyzed]) -> None:
        await self._append_to_stream(published)
        await self._mark_published([analysis.signal.signal_id for analysis in published])

    async def flush_published(self) -> None:
        """At a clean stop: every signal published is streamed and marked."""
        await self._published.flush()

    async def _append_to_stream(self, published: list[SignalAnalyzed]) -> None:
        try:
            stream = self.keys("signal", "stream")
            async with self.redis.pipeline(transaction=False) as pipe:
                for analysis in published:
                    pipe.xadd(
                        stream,
                        {"signal_id": analysis.signal.signal_id, "symbol": analysis.signal.symbol,
                         "decision": analysis.decision.value,
                         "analysis": analysis.model_dump_json()},
                        maxlen=SIGNAL_STREAM_MAXLEN, approximate=True,
                    )
                await pipe.execute()
        except Exception as exc:
            # The stream is real-time data, fine to lose; the analysis went out on RabbitMQ.
            log.warning("signal:stream append failed", error=str(exc))

    async def relay_unpublished(self) -> int:
        """Publish stored signals whose publish was never confirmed (crash-only recovery).

        Only while they are fresh: a signal older than `outbox_max_age_s` is stale for trading
        and stays unpublished (shown as such by /signals) rather than reaching RISK late.
        """
        now = datetime.now(UTC)
        newest = now - timedelta(seconds=self.settings.outbox_grace_s)
        oldest = now - timedelta(seconds=self.settings.outbox_max_age_s)
        async with self.sessions() as session:
            rows = (await session.scalars(
                select(SignalRecord)
                .where(SignalRecord.published_at.is_(None),
                       SignalRecord.received_at < newest, SignalRecord.received_at > oldest)
                .order_by(SignalRecord.received_at)
                .limit(100)
            )).all()
        for row in rows:
            analysis = SignalAnalyzed.model_validate(row.analysis)
            await self._publish(analysis)
            await self._mark_published([row.signal_id])
            log.info("unpublished signal relayed", signal_id=row.signal_id,
                     correlation_id=row.signal_id)
        return len(rows)

    async def run_relay(self) -> None:
        while True:
            try:
                await self.relay_unpublished()
            except Exception as exc:
                log.warning("outbox relay round failed", error=str(exc))
            await asyncio.sleep(self.settings.outbox_interval_s)

    async def recent(self, symbol: str | None, limit: int) -> list[SignalRecord]:
        async with self.sessions() as session:
            query = select(SignalRecord).order_by(SignalRecord.received_at.desc()).limit(limit)
            if symbol:
                query = query.where(SignalRecord.symbol == symbol)
            return list((await session.scalars(query)).all())
