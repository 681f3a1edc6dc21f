"""Admin page: the users and the audit trail (filter by user, action, patient, day), with its integrity check."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import data_access as da
from flows.access.audit import ACTIONS

settings = da.app_settings()
auth.guard(settings, "admin", "open the admin page")
st.title("Admin")

st.subheader("Users")
store = auth.user_store(settings)
if store is None:
    st.info("No named users: this is the single-user local demo. Add users with "
            "`clinfuse users add NAME --role clinician|analyst|admin`.")
else:
    users = pd.DataFrame([{"user": u.username, "role": u.role, "state": "disabled" if u.disabled else "active",
                           "created": pd.Timestamp(u.created_at, unit="s", tz="UTC")} for u in store.list()])
    st.dataframe(users, hide_index=True, width="stretch", key="admin_users")
    st.caption("Add, disable or reset users with `clinfuse users add|disable|reset` (passwords never pass "
               "through the browser).")

st.subheader("Audit trail")
log = auth.audit_log(settings)
check = log.verify()
if check.ok:
    st.success(f"Intact: {check.n_entries} entries, every hash and link verified.", icon=":material/verified:")
    if not check.keyed:
        st.warning("No audit key is configured: the chain is unkeyed, so anyone who can write the home could "
                   "rewrite it consistently (see OPERATIONS, 'The audit trail').", icon=":material/key_off:")
else:
    st.error(f"The audit trail was tampered with: {len(check.problems)} problem(s).", icon=":material/gpp_bad:")
    for problem in check.problems:
        st.markdown(f"- **{problem.kind}**: {problem.message}")

trail = pd.DataFrame(log.entries(), columns=["seq", "at", "user", "role", "action", "patient_id", "detail"])
if trail.empty:
    st.info("No entries yet.")
    st.stop()
trail["at"] = pd.to_datetime(trail["at"], utc=True, format="ISO8601")
c1, c2, c3, c4 = st.columns([1, 1, 1.4, 1.6])
who = c1.multiselect("User", sorted(trail["user"].dropna().unique()), key="audit_user")
what = c2.multiselect("Action", [a for a in ACTIONS if a in set(trail["action"])], key="audit_action")
patient = c3.text_input("Pseudonymous patient id", key="audit_patient", placeholder="P3a9f…")
first, last = trail["at"].min().date(), trail["at"].max().date()
days = c4.date_input("Between", (first, last), min_value=first, max_value=last, key="audit_days")
day_from, day_to = days if isinstance(days, tuple | list) and len(days) == 2 else (first, last)
shown = trail[trail["at"].dt.date.between(day_from, day_to)]
if who:
    shown = shown[shown["user"].isin(who)]
if what:
    shown = shown[shown["action"].isin(what)]
if patient.strip():
    shown = shown[shown["patient_id"].fillna("").str.contains(patient.strip(), regex=False)]
st.caption(f"**{len(shown)}** of {len(trail)} entries, newest first")
st.dataframe(shown.sort_values("seq", ascending=False), hide_index=True, width="stretch", key="audit_table",
             column_config={"at": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss")})
