"""Dashboard session bookkeeping that needs no Streamlit: idle expiry.

A session records when it was last active; a request after more than the idle
time signs it out (the page then shows the sign-in form), so a workstation left
unattended does not stay signed in to patient data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionUser:
    """Who the session belongs to: what the audit trail records for each action."""

    username: str
    role: str
    signed_in_at: float


def idle_expired(last_seen: float | None, now: float, idle_s: float) -> bool:
    """True when a session last active at ``last_seen`` must sign in again at ``now``."""
    return last_seen is None or now - last_seen > idle_s
