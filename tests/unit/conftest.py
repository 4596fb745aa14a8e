from __future__ import annotations

import pytest

from services.brain.settings import BrainSettings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> BrainSettings:
    """BRAIN's settings at the spec defaults, whatever the surrounding environment holds."""
    for name in BrainSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    return BrainSettings(_env_file=None)
