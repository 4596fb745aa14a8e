"""The dashboard's stream hub: a snapshot first, throttled updates, slow clients dropped."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from services.notify.dashboard.live import StreamHub
from services.notify.dashboard.state import DashboardState

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def hub(**options: float) -> StreamHub:
    return StreamHub(DashboardState(NOON), lambda: NOON, **options)


def event(frame: str | None) -> tuple[str, dict]:
    assert frame is not None
    name, data = frame.removesuffix("\n\n").split("\n")
    return name.removeprefix("event: "), json.loads(data.removeprefix("data: "))


async def test_a_client_gets_a_snapshot_then_updates():
    streams = hub()
    queue = streams.subscribe()
    name, snapshot = event(queue.get_nowait())
    assert name == "snapshot" and snapshot["funnel"]["received"] == 0
    streams.state.apply_health("brain", "ok", {}, NOON)
    streams.broadcast()
    name, update = event(queue.get_nowait())
    assert name == "update" and update["services"]["brain"]["status"] == "ok"


async def test_a_slow_client_is_dropped_and_the_others_are_not_held():
    streams = hub(client_queue_size=3)
    slow, fast = streams.subscribe(), streams.subscribe()
    for _ in range(4):
        streams.broadcast()
        while not fast.empty():
            assert fast.get_nowait() is not None
    assert streams.clients == {fast}
    assert slow.get_nowait() is None  # its stream ends at once, backlog discarded
    assert slow.empty()


async def test_close_ends_every_stream_and_any_later_one():
    streams = hub()
    queues = [streams.subscribe() for _ in range(3)]
    streams.close()
    assert [q.get_nowait() for q in queues] == [None, None, None]
    assert streams.clients == set()
    assert streams.subscribe().get_nowait() is None


async def test_changes_are_sent_at_most_once_per_interval():
    streams = hub(update_interval_s=0.2)
    queue = streams.subscribe()
    queue.get_nowait()  # the snapshot
    runner = asyncio.create_task(streams.run())
    try:
        for _ in range(50):  # a burst of ticks within one interval
            streams.changed()
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert 1 <= queue.qsize() <= 2
        while not queue.empty():
            queue.get_nowait()
        await asyncio.sleep(0.3)
        assert queue.empty()  # nothing changed: nothing sent
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
