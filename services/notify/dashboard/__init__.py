"""NOTIFY's live web dashboard (notify.md, "Dashboard")."""

from services.notify.dashboard.live import Dashboard
from services.notify.dashboard.routes import dashboard_router

__all__ = ["Dashboard", "dashboard_router"]
