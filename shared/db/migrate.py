"""Apply Alembic migrations: `python -m shared.db.migrate` (by `make run`, at container start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Synchronous: call it before the event loop starts (or from a worker thread)."""
    command.upgrade(alembic_config(database_url), revision)


if __name__ == "__main__":
    upgrade(Settings().database_url.get_secret_value())
