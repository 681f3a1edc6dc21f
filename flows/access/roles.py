"""Roles and the permissions each one grants: one table that every page and command checks.

Kept as data (not scattered ``if role == ...``) so the browser test, the docs and
the pages read the same answer to "may this role do that?".
"""

from __future__ import annotations

ROLES: tuple[str, ...] = ("clinician", "analyst", "admin")
DEMO_ROLE = "demo"
"""The single-user local demo (no named users): every permission, still audited under the user ``demo``."""

PERMISSIONS: dict[str, frozenset[str]] = {
    "worklist": frozenset({"clinician", "analyst"}),
    "patient": frozenset({"clinician", "analyst"}),  # analysts see the pseudonymous view only
    "export_csv": frozenset({"clinician", "analyst"}),
    "reveal_mrn": frozenset({"clinician"}),
    "review": frozenset({"clinician"}),
    "model": frozenset({"analyst"}),
    "batch": frozenset({"analyst"}),
    "admin": frozenset({"admin"}),
}
"""Permission -> roles holding it. Pages are permissions too (``worklist``, ``patient``, ``model``, ...)."""


def allowed(role: str, permission: str) -> bool:
    """True when ``role`` holds ``permission``; unknown permissions are refused (fail closed)."""
    if permission not in PERMISSIONS:
        return False
    return role == DEMO_ROLE or role in PERMISSIONS[permission]


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else ValueError naming the valid ones."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role
