"""Access and exposure: the dashboard asks for its password and keeps it out of the page.

The dashboard gate is driven with Streamlit's AppTest, with and without CLINFUSE_DASHBOARD_PASSWORD. That
`clinfuse serve` listens on loopback only and writes no secret to its logs or home is checked on the serve
that tests/flows/test_serve_command.py starts (every listening socket of its process tree, with psutil):
one start of the whole team instead of two.
"""

from __future__ import annotations

import pytest

from tests.test_reliability_corpus import REPO

APP = str(REPO / "dashboard" / "app.py")
PASSWORD = "access-pass-94c1e7"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, settings):
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import reset_caches

    def make(password: str | None) -> AppTest:
        monkeypatch.setenv("CLINFUSE_HOME", str(settings.home))
        for key in ("CLINFUSE_MLFLOW_TRACKING_URI", "CLINFUSE_PREFECT_API_URL"):
            monkeypatch.delenv(key, raising=False)
        if password is None:
            monkeypatch.delenv("CLINFUSE_DASHBOARD_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("CLINFUSE_DASHBOARD_PASSWORD", password)
        reset_caches()
        return AppTest.from_file(APP, default_timeout=60)

    yield make

    reset_caches()


def _page_text(at) -> str:
    return " ".join(str(e.value) for kind in ("title", "markdown", "caption", "error", "warning")
                    for e in getattr(at, kind)) + " " + " ".join(str(c.value) for c in at.sidebar.caption)


def test_dashboard_without_password_is_open(app, settings) -> None:
    at = app(None).run()
    assert not at.exception
    assert not [t for t in at.text_input if t.label == "Password"]
    assert any("Sign-in: open local demo" in w.value and "every permission" in w.value for w in at.warning)
    assert not (settings.access_dir / "access.db").exists()  # deciding the mode and the worklist read only


@pytest.fixture
def bound():
    """Set Streamlit's ``server.address`` as `streamlit run --server.address` would (AppTest runs no server)."""
    import streamlit as st

    old = st.get_option("server.address")
    yield lambda address: st.config.set_option("server.address", address)
    st.config.set_option("server.address", old)


@pytest.mark.parametrize("password", [None, PASSWORD], ids=["open", "shared-password"])
def test_dashboard_process_refuses_off_loopback_without_named_users(app, bound, password) -> None:
    """Defence in depth: `streamlit run dashboard/app.py --server.address 0.0.0.0` (no `clinfuse dashboard`
    in front) shows the refusal, never the open demo or the shared-password form."""
    at = app(password)
    bound("0.0.0.0")
    at.run()
    assert not at.exception
    assert any("refused" in e.value and "clinfuse users add" in e.value for e in at.error)
    assert not at.text_input and "Worklist" not in _page_text(at)


def test_dashboard_with_named_users_states_mode_and_may_listen_wide(app, bound, settings) -> None:
    from flows.access.users import UserStore

    UserStore(settings.access_dir / "access.db").add("d.admin", "admin", "correct-horse-7")
    at = app(PASSWORD)
    bound("0.0.0.0")
    at.run()
    assert not at.exception and not at.error
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert "Sign-in: named users" in _page_text(at)


def test_dashboard_on_other_loopback_forms_serves_the_demo(app, bound) -> None:
    for address in ("127.0.0.2", "::1", "localhost"):
        at = app(None)
        bound(address)
        at.run()
        assert not at.exception and not at.error, address
        assert "Sign-in: open local demo" in _page_text(at)


def test_dashboard_with_password_requires_sign_in(app) -> None:
    at = app(PASSWORD).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["clinfuse — sign in"]
    assert len(at.text_input) == 1 and at.text_input[0].label == "Password"
    at.text_input[0].input("wrong-" + PASSWORD)
    at.button[0].click()
    at.run()
    assert any("Wrong password" in e.value for e in at.error)
    assert [t.value for t in at.title] == ["clinfuse — sign in"]
    assert "Sign-in: shared password" in _page_text(at)
    at.text_input[0].input(PASSWORD)
    at.button[0].click()
    at.run()
    assert not at.exception
    assert "clinfuse — sign in" not in [t.value for t in at.title]
    assert "Sign-in: shared password" in _page_text(at)
    assert not any(PASSWORD in str(getattr(e, "value", "")) for e in at.main)


@pytest.mark.parametrize("audit_key", [None, "audit-key-5d0e7f31c2"], ids=["unkeyed", "keyed"])
def test_admin_page_says_when_the_trail_is_unkeyed(app, settings, monkeypatch, audit_key) -> None:
    from flows.access.users import UserStore

    UserStore(settings.access_dir / "access.db").add("d.admin", "admin", "correct-horse-7")
    if audit_key:
        monkeypatch.setenv("CLINFUSE_AUDIT_KEY", audit_key)
    else:
        monkeypatch.delenv("CLINFUSE_AUDIT_KEY", raising=False)
    at = app(None).run()
    at.text_input(key="sign_in_user").input("d.admin")
    at.text_input(key="sign_in_password").input("correct-horse-7")
    at.form_submit_button[0].click().run()
    assert not at.exception and any("Intact" in s.value for s in at.success)
    unkeyed = [w.value for w in at.warning if "No audit key" in w.value]
    assert bool(unkeyed) == (audit_key is None)
