"""BRAIN, RISK and EXECUTE (paper) in-process over the real broker, Redis and database: the
trading path that NOTIFY and the end-to-end tests watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.integration.conftest import Brain, brain_settings, running_brain
from tests.integration.execute_fixtures import Execute, execute_settings, running_execute
from tests.integration.risk_fixtures import Risk, risk_settings, running_risk


@pytest.fixture
async def system(vhost, redis_prefix, sqlite_url, amqp
                 ) -> AsyncIterator[tuple[Brain, Risk, Execute]]:
    async with AsyncExitStack() as stack:
        brain = await stack.enter_async_context(
            running_brain(brain_settings(vhost, redis_prefix, sqlite_url)))
        risk = await stack.enter_async_context(
            running_risk(risk_settings(vhost, redis_prefix, sqlite_url)))
        execute = await stack.enter_async_context(
            running_execute(execute_settings(vhost, redis_prefix, sqlite_url)))
        yield brain, risk, execute
