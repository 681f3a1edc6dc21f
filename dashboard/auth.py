"""The optional password gate in front of every page.

Clinical dashboards often run on a shared workstation; when
``settings.dashboard_password`` is set, nothing (not even the navigation) is
drawn until the session has signed in. The comparison is constant-time so the
gate does not leak the password's prefix through timing.
"""

from __future__ import annotations

import hmac

import streamlit as st
from pydantic import SecretStr

SESSION_KEY = "clinfuse_signed_in"


def password_ok(given: str, expected: SecretStr | str) -> bool:
    """True when ``given`` equals the configured password (constant-time comparison)."""
    secret = expected.get_secret_value() if isinstance(expected, SecretStr) else expected
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def require_sign_in(expected: SecretStr | None) -> bool:
    """Draw the sign-in form unless signed in; True when the session may see the pages.

    With no password configured the dashboard is open (it binds 127.0.0.1 by default).
    """
    if expected is None or not expected.get_secret_value():
        return True
    if st.session_state.get(SESSION_KEY):
        if st.sidebar.button("Sign out", key="sign_out"):
            st.session_state[SESSION_KEY] = False
            st.rerun()
        return True
    st.title("clinfuse — sign in")
    with st.form("sign_in"):
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if password_ok(given, expected):
            st.session_state[SESSION_KEY] = True
            st.session_state.pop("sign_in_password", None)
            st.rerun()
        st.error("Wrong password.")
    return False
