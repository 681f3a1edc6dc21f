"""clinfuse clinician dashboard: entry point of `streamlit run dashboard/app.py` (or `clinfuse dashboard`).

Sets the page layout, signs the session in (named users with roles, or the
single-user local demo; see :mod:`dashboard.auth`), then offers only the pages
the session's role may open. Each page checks its permission again, so a typed
URL cannot reach a page the navigation does not list. Pages read the stores;
flows write them; the dashboard itself writes only the audit trail and reviews.
"""

from __future__ import annotations

import streamlit as st

from dashboard.auth import mode_banner, require_sign_in, sidebar_identity
from dashboard.data_access import app_settings
from flows.access.roles import allowed

st.set_page_config(page_title="clinfuse", page_icon=":material/monitor_heart:", layout="wide")

settings = app_settings()
user = require_sign_in(settings)
if user is None:
    st.stop()

PAGES = [  # (permission, page)
    ("worklist", st.Page("pages/worklist.py", title="Worklist", icon=":material/list_alt:", default=True)),
    ("patient", st.Page("pages/patient.py", title="Patient", icon=":material/person:")),
    ("model", st.Page("pages/model.py", title="Model", icon=":material/insights:")),
    ("batch", st.Page("pages/batch.py", title="Batch", icon=":material/play_circle:")),
    ("admin", st.Page("pages/admin.py", title="Admin", icon=":material/admin_panel_settings:",
                      default=not allowed(user.role, "worklist"))),
]
pages = [page for permission, page in PAGES if allowed(user.role, permission)]
mode_banner(settings)  # sign-in you can see: the open demo is a warning on every page, the others a caption
sidebar_identity(settings, user)
st.navigation(pages).run()
st.sidebar.caption(f"Data: `{settings.home}`")
