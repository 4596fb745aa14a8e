"""What every service's HTTP app has: API-key auth, `/health`, and 503 for missing dependencies."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import Settings
from shared.messaging import Broker, BrokerUnavailableError
from shared.observability.logging import get_logger
from shared.observability.metrics import instrument

log = get_logger(__name__)

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)

# Failures of a dependency, not of the caller: answered 503 so that clients retry.
# (Only connection-level database errors: a DataError or IntegrityError is no outage.)
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    BrokerUnavailableError, RedisError, OperationalError, InterfaceError, PoolTimeoutError,
    ConnectionError, TimeoutError,
)


def constant_time_in(candidate: str, secrets: list[str]) -> bool:
    """Whether `candidate` equals one of `secrets`, comparing every one in constant time."""
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


_bearer = HTTPBearer(auto_error=False)


def api_key_auth(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A dependency refusing requests without a key from `PHOENIX95_API_KEYS`, given as
    `X-API-Key` or as a Bearer token (for senders that cannot set headers of their own,
    such as Alertmanager)."""
    keys = [key.get_secret_value() for key in settings.phoenix95_api_keys]

    async def require_api_key(
        api_key: str | None = Security(_api_key_header),
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    ) -> None:
        given = api_key or (bearer.credentials if bearer else None)
        if not given or not constant_time_in(given, keys):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing or invalid X-API-Key",
                headers={"WWW-Authenticate": "X-API-Key"},
            )

    return require_api_key


def add_unavailable_handler(app: FastAPI,
                            extra: tuple[type[Exception], ...] = ()) -> None:
    """503 with Retry-After for a dependency's failure (`extra`: the service's own, such
    as an exchange outage)."""
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency unavailable", path=request.url.path,
                    error=f"{type(exc).__name__}: {exc}")
        return JSONResponse(
            {"detail": "a dependency is unavailable, retry shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"},
        )

    for error in (*UNAVAILABLE_ERRORS, *extra):
        app.add_exception_handler(error, unavailable)


async def _check(probe: Awaitable[object], timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await probe
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


async def dependency_checks(
    broker: Broker, redis_ping: Awaitable[object], engine: AsyncEngine, timeout_s: float = 1.5
) -> dict[str, str]:
    async def db_ping() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    redis_state, db_state = await asyncio.gather(
        _check(redis_ping, timeout_s), _check(db_ping(), timeout_s)
    )
    return {
        "rabbitmq": "ok" if broker.connected else "down: not connected",
        "redis": redis_state,
        "db": db_state,
    }


async def infrastructure_checks(state: Any) -> dict[str, str]:
    """RabbitMQ, Redis and the database of a service app (`app.state.broker/redis/db`)."""
    return await dependency_checks(state.broker, state.redis.ping(), state.db)


def service_app(settings: Settings, *, title: str, description: str, lifespan: Any,
                router: APIRouter, unavailable: tuple[type[Exception], ...] = (),
                health: bool = True) -> FastAPI:
    """A service's FastAPI app: metrics, 503 for missing dependencies, its routes, and (unless
    the service has its own) `/health` over RabbitMQ, Redis and the database."""
    app = FastAPI(title=f"Phoenix 95 {title}", description=description, version="0.1.0",
                  lifespan=lifespan)
    instrument(app, settings.service_name)
    add_unavailable_handler(app, extra=unavailable)
    app.include_router(router)
    if health:
        @app.get("/health", summary=f"Liveness of {title} and its dependencies")
        async def health_check(request: Request) -> JSONResponse:
            checks = await infrastructure_checks(request.app.state)
            return health_response(settings.service_name, checks)
    return app


def health_response(service: str, checks: dict[str, str]) -> JSONResponse:
    healthy = all(state == "ok" for state in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "service": service, "checks": checks},
        status_code=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
    )
