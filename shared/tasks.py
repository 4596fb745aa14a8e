"""Stopping a service's background tasks at shut-down."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.observability.logging import get_logger

log = get_logger(__name__)

CANCEL_ATTEMPTS = 20
CANCEL_WAIT_S = 0.25


async def stop_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancels each task until it is done (giving up on one after about 5 s). Once is not
    always enough on Python 3.11: redis-py sends commands through asyncio.wait_for (the socket
    timeout is set), and 3.11's wait_for swallows a cancellation that arrives as its command
    completes (CPython gh-86296, fixed in 3.12); the task then carries on."""
    for task in tasks:
        for _ in range(CANCEL_ATTEMPTS):
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_WAIT_S)
            if task.done():
                break
        else:
            log.warning("background task did not stop", task=task.get_name())
            continue
        if not task.cancelled():
            task.exception()  # retrieved: what it raised while stopping does not matter now
