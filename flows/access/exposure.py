"""Who can reach the dashboard, and which sign-in mode guards it: one answer for the CLI, the page and doctor.

The open local demo (no named users) gives every permission to whoever opens the
page, so it may only listen on a loopback address. The check takes the address
Streamlit is actually told to bind (``--server.address``), never a separate
setting that might disagree with it, and every loopback spelling counts as
loopback: the whole of 127.0.0.0/8, ``::1`` (and its IPv4-mapped form) and
``localhost``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

import psutil

OPEN_DEMO = "open local demo"
SHARED_PASSWORD = "shared password"
NAMED_USERS = "named users"

_MODE_TEXT = {
    OPEN_DEMO: "Sign-in: open local demo. No sign-in: anyone who can open this page acts as user 'demo' with "
               "every permission (loopback only). Create named users with `clinfuse users add`.",
    SHARED_PASSWORD: "Sign-in: shared password. One password (CLINFUSE_DASHBOARD_PASSWORD) for everyone, who "
                     "then acts as user 'demo' with every permission (loopback only).",
    NAMED_USERS: "Sign-in: named users. Each person signs in with their own name and password; their role "
                 "decides what they may see and do.",
}


def is_loopback(host: str | None) -> bool:
    """True for an address only this machine can reach: 127.0.0.0/8, ::1 (also ::ffff:127.x) or localhost.

    ``None`` or an empty string is *not* loopback: Streamlit then binds every interface.
    """
    if not host:
        return False
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is not trusted as loopback
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def listening_hosts(pid: int | None = None) -> list[str]:
    """The local addresses process ``pid`` (default: this one) listens on: what a server really binds."""
    try:
        proc = psutil.Process(pid or os.getpid())
        conns = proc.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return sorted({c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN})


def sign_in_mode(named_users: bool, shared_password: bool) -> str:
    """The mode the dashboard runs in: named users win over a shared password, which wins over none."""
    if named_users:
        return NAMED_USERS
    return SHARED_PASSWORD if shared_password else OPEN_DEMO


def describe_mode(mode: str) -> str:
    """One sentence a person reads on the page and in ``clinfuse doctor``: the mode and what it means."""
    return _MODE_TEXT[mode]


def exposure_refusal(hosts: Iterable[str | None], named_users: bool) -> str | None:
    """Why the dashboard must not serve, or None when it may.

    ``hosts`` are the addresses it binds (or would bind). Without named users every one of
    them must be loopback; with named users any address is allowed (sign-in guards it).
    """
    if named_users:
        return None
    exposed = sorted({str(h or "all interfaces") for h in hosts if not is_loopback(h)})
    if not exposed:
        return None
    return (f"refused: the dashboard would be reachable from other machines ({', '.join(exposed)}) without named "
            "users, and the open demo / shared-password mode gives every visitor every permission. Either bind "
            "loopback (--host 127.0.0.1) and reach it through an SSH tunnel or a TLS reverse proxy, or first "
            "create named users: `clinfuse users add NAME --role admin` (then clinician / analyst accounts).")
