"""KPI tests: no background scheduler (tests run the jobs themselves)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_schedulers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_SERVICES__SCHEDULER", "false")
    monkeypatch.setenv("IOC_KPI__SCHEDULER", "false")
