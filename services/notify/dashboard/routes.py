"""`GET /dashboard` (the page and its two static files) and `GET /events/stream` (SSE),
behind HTTP Basic with DASHBOARD_PASSWORD when it is set (any user name)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files

from fastapi import APIRouter, Depends, HTTPException, Request, Security, status
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from services.notify.dashboard.live import HEARTBEAT_S, Dashboard
from services.notify.settings import NotifySettings

_basic = HTTPBasic(auto_error=False)
STATIC = {"index.html": "text/html; charset=utf-8",
          "dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}


def dashboard_auth(settings: NotifySettings) -> Callable[..., Awaitable[None]]:
    password = settings.dashboard_password

    async def require_password(
        credentials: HTTPBasicCredentials | None = Security(_basic),
    ) -> None:
        if password is None:
            return
        given = credentials.password.encode() if credentials else b""
        if not secrets.compare_digest(given, password.get_secret_value().encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "the dashboard password is required",
                headers={"WWW-Authenticate": 'Basic realm="Phoenix 95", charset="UTF-8"'})

    return require_password


def dashboard_router(settings: NotifySettings) -> APIRouter:
    router = APIRouter(dependencies=[Depends(dashboard_auth(settings))])
    # Read once: the page loads nothing from anywhere else.
    static = files("services.notify.dashboard") / "static"
    assets = {name: (static / name).read_bytes() for name in STATIC}

    def asset(name: str) -> Response:
        return Response(assets[name], media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard", summary="The live dashboard (HTML)", response_class=Response)
    async def page() -> Response:
        return asset("index.html")

    @router.get("/dashboard/dashboard.js", include_in_schema=False)
    async def script() -> Response:
        return asset("dashboard.js")

    @router.get("/dashboard/dashboard.css", include_in_schema=False)
    async def style() -> Response:
        return asset("dashboard.css")

    @router.get("/events/stream", summary="The dashboard's Server-Sent Events: a snapshot, "
                "then updates", response_class=StreamingResponse)
    async def stream(request: Request) -> StreamingResponse:
        dashboard: Dashboard = request.app.state.dashboard

        async def frames() -> AsyncIterator[str]:
            queue = dashboard.hub.subscribe()  # here, so that `finally` always pairs with it
            # Ends when the hub says so (shutdown, or this client fell behind); a client
            # that disconnects cancels it (Starlette listens for the disconnect).
            try:
                while True:
                    try:
                        frame = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        yield ": heartbeat\n\n"
                        continue
                    if frame is None:
                        return
                    yield frame
            finally:
                dashboard.hub.unsubscribe(queue)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return router
