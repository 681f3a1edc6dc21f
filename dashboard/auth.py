"""Sign-in, roles and the audit hook of the dashboard (the logic itself lives in :mod:`flows.access`).

Three modes, chosen by what the home holds:

* **Named users** (any user created with ``clinfuse users add``): user name and
  password, argon2id-checked and rate-limited by :class:`flows.access.users.UserStore`;
  each page and action asks :func:`can` / :func:`guard` whether the session's role
  holds the permission.
* **Single-user local demo** (no users): the shared ``dashboard_password`` if set,
  else no gate; the session acts as user ``demo`` with every permission. Only on a
  loopback address: a dashboard reachable from other machines requires named users.
  The check reads the address this Streamlit server was told to bind and the
  sockets it actually listens on (defence in depth behind ``clinfuse dashboard``'s
  own refusal), so ``streamlit run`` with a wide address is refused too.

Every page states the mode (:func:`mode_banner`), so nobody mistakes the open demo
for a signed-in deployment.

Sessions idle longer than ``session_idle_minutes`` go back to the sign-in form.
Every sign-in, patient view, reveal, export, batch trigger and review is appended
to the hash-chained audit trail (:mod:`flows.access.audit`) with user and role.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st
from pydantic import SecretStr

from flows.access.audit import AuditLog
from flows.access.exposure import OPEN_DEMO, describe_mode, exposure_refusal, listening_hosts, sign_in_mode
from flows.access.reviews import ReviewStore, access_db
from flows.access.roles import DEMO_ROLE, allowed
from flows.access.sessions import SessionUser, idle_expired
from flows.access.users import UserStore, count_users
from flows.settings import Settings

USER_KEY = "clinfuse_user"
LAST_SEEN_KEY = "clinfuse_last_seen"
EXPIRED_KEY = "clinfuse_expired"


def password_ok(given: str, expected: SecretStr | str) -> bool:
    """True when ``given`` equals the configured password (constant-time comparison)."""
    secret = expected.get_secret_value() if isinstance(expected, SecretStr) else expected
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def user_store(settings: Settings) -> UserStore | None:
    """The named users of this home, or None when nobody was ever added (single-user demo).

    Reads only: a home without users gets no user store created by opening the dashboard.
    """
    db = access_db(settings.access_dir)
    if not count_users(db):
        return None
    return UserStore(db, max_failures=settings.sign_in_max_failures, lockout_s=settings.sign_in_lockout_s)


def _shared_password(settings: Settings) -> SecretStr | None:
    password = settings.dashboard_password
    return password if password is not None and password.get_secret_value() else None


def served_hosts() -> list[str]:
    """Where this Streamlit server is reachable: its configured address and every address it listens on.

    Streamlit with no ``server.address`` binds every interface, which shows up as a 0.0.0.0 / ::
    listening socket of this process; under AppTest there is no server, so only the option counts.
    """
    configured = st.get_option("server.address")
    return [*listening_hosts(), *([configured] if configured else [])]


def current_mode(settings: Settings) -> str:
    """open local demo / shared password / named users, from what the home and settings hold now."""
    return sign_in_mode(user_store(settings) is not None, _shared_password(settings) is not None)


def mode_banner(settings: Settings, sidebar: bool = True) -> None:
    """State the sign-in mode: the open demo as a warning on top of the page (nobody signed in, every
    permission), the signed-in modes as a caption (in the sidebar, or on the sign-in form)."""
    mode = current_mode(settings)
    text = describe_mode(mode)
    if mode == OPEN_DEMO:
        st.warning(text, icon=":material/lock_open:")
    else:
        (st.sidebar if sidebar else st).caption(text)


def review_store(settings: Settings) -> ReviewStore:
    return ReviewStore(access_db(settings.access_dir))


def audit_log(settings: Settings) -> AuditLog:
    """The home's trail, signed with the configured audit key and anchored where configured."""
    return settings.audit_trail()


def current_user() -> SessionUser | None:
    return st.session_state.get(USER_KEY)


def can(permission: str) -> bool:
    """Whether the signed-in session's role holds ``permission`` (False when signed out)."""
    user = current_user()
    return user is not None and allowed(user.role, permission)


def audit(settings: Settings, action: str, patient_id: str | None = None, detail: str = "") -> None:
    """Append an entry for the signed-in session (pseudonymous patient ids only)."""
    user = current_user()
    audit_log(settings).append(user.username if user else "anonymous", user.role if user else "-", action,
                               patient_id, detail)


def guard(settings: Settings, permission: str, what: str) -> None:
    """Stop the page with a refusal (audited) unless the session's role holds ``permission``."""
    if can(permission):
        return
    user = current_user()
    audit(settings, "denied", detail=f"{permission}")
    st.error(f"Your role ({user.role if user else 'signed out'}) may not {what}.", icon=":material/block:")
    st.stop()


def _sign_in(settings: Settings, user: SessionUser) -> None:
    st.session_state[USER_KEY] = user
    st.session_state[LAST_SEEN_KEY] = time.time()
    st.session_state.pop(EXPIRED_KEY, None)
    audit(settings, "sign_in")


def sign_out(settings: Settings, action: str = "sign_out") -> None:
    """Forget the session's user (and what it revealed); audited as ``action``."""
    if current_user() is not None:
        audit(settings, action)
    for key in list(st.session_state.keys()):
        if key != EXPIRED_KEY:
            del st.session_state[key]


def _form(named: bool) -> tuple[bool, str, str]:
    with st.form("sign_in"):
        name = st.text_input("User name", key="sign_in_user") if named else ""
        given = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    return submitted, name, given


def _sign_in_page(settings: Settings, store: UserStore | None, password: SecretStr | None) -> None:
    st.title("clinfuse — sign in")
    mode_banner(settings, sidebar=False)
    if st.session_state.get(EXPIRED_KEY):
        st.warning(f"Your session expired after {settings.session_idle_minutes:g} minutes without activity; "
                   "sign in again.", icon=":material/timer_off:")
    submitted, name, given = _form(store is not None)
    if not submitted:
        return
    st.session_state.pop("sign_in_password", None)
    if store is not None:
        result = store.authenticate(name, given)
        if result.ok and result.user is not None:
            _sign_in(settings, SessionUser(result.user.username, result.user.role, time.time()))
            st.rerun()
        audit_log(settings).append(name.strip().lower()[:64] or "-", "-", "sign_in_failed",
                                   detail=result.reason[:80])
        st.error(result.reason)
    elif password is not None and password_ok(given, password):
        _sign_in(settings, SessionUser("demo", DEMO_ROLE, time.time()))
        st.rerun()
    else:
        audit_log(settings).append("demo", "-", "sign_in_failed", detail="wrong shared password")
        st.error("Wrong password.")


def require_sign_in(settings: Settings) -> SessionUser | None:
    """The session's user, or None after drawing the sign-in form (or a refusal); handles idle expiry."""
    store = user_store(settings)
    password = _shared_password(settings)
    refusal = exposure_refusal(served_hosts(), store is not None)
    if refusal is not None:
        st.error(refusal, icon=":material/block:")
        return None
    now = time.time()
    user = current_user()
    if user is not None and user.role == DEMO_ROLE and store is not None:
        sign_out(settings)  # named users were created since: the demo session ends
        user = None
    if user is not None and idle_expired(st.session_state.get(LAST_SEEN_KEY), now,
                                         settings.session_idle_minutes * 60):
        sign_out(settings, "session_expired")
        st.session_state[EXPIRED_KEY] = True
        user = None
    if user is None and store is None and password is None:
        _sign_in(settings, SessionUser("demo", DEMO_ROLE, now))  # open single-user local demo
        user = current_user()
    if user is None:
        _sign_in_page(settings, store, password)
        return None
    st.session_state[LAST_SEEN_KEY] = now
    return user


def sidebar_identity(settings: Settings, user: SessionUser) -> None:
    """Who is signed in, and the sign-out button (not in the open demo, where there is nothing to sign out of)."""
    st.sidebar.caption(f"Signed in as **{user.username}** ({user.role})")
    open_demo = user.role == DEMO_ROLE and (settings.dashboard_password is None
                                            or not settings.dashboard_password.get_secret_value())
    if not open_demo and st.sidebar.button("Sign out", key="sign_out"):
        sign_out(settings)
        st.rerun()
