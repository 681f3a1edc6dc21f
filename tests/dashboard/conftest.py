"""Fixtures of the dashboard tests: a written fixture home and an AppTest pointed at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.fixtures import FixtureHome, build_home

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="session")
def fixture_home(tmp_path_factory: pytest.TempPathFactory) -> FixtureHome:
    """A 30-patient home with two batches; shared read-only by the tests (the dashboard never writes)."""
    return build_home(tmp_path_factory.mktemp("dash") / "home")


def reset_caches() -> None:
    """Forget settings and Streamlit caches: AppTest runs in this process, so they outlive one app."""
    import streamlit as st

    from flows.settings import get_settings

    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app_for(monkeypatch: pytest.MonkeyPatch):
    """Factory: an AppTest of dashboard/app.py reading the given home (and optional password)."""
    from streamlit.testing.v1 import AppTest

    def make(home: Path, password: str | None = None) -> AppTest:
        monkeypatch.setenv("CLINFUSE_HOME", str(home))
        if password is None:
            monkeypatch.delenv("CLINFUSE_DASHBOARD_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("CLINFUSE_DASHBOARD_PASSWORD", password)
        monkeypatch.delenv("CLINFUSE_MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("CLINFUSE_PREFECT_API_URL", raising=False)
        reset_caches()
        return AppTest.from_file(APP, default_timeout=60)

    yield make
    reset_caches()
