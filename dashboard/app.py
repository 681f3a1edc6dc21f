"""clinfuse clinician dashboard: entry point of `streamlit run dashboard/app.py` (or `clinfuse dashboard`).

Sets the page layout, asks for the password when one is configured, then hands
over to the page the URL names. Pages only read the predictions store, the
manifest, the arrays and the MLflow registry; flows write them.
"""

from __future__ import annotations

import streamlit as st

from dashboard.auth import require_sign_in
from dashboard.data_access import app_settings

st.set_page_config(page_title="clinfuse", page_icon=":material/monitor_heart:", layout="wide")

settings = app_settings()
if not require_sign_in(settings.dashboard_password):
    st.stop()

pages = [
    st.Page("pages/worklist.py", title="Worklist", icon=":material/list_alt:", default=True),
    st.Page("pages/patient.py", title="Patient", icon=":material/person:"),
    st.Page("pages/model.py", title="Model", icon=":material/insights:"),
    st.Page("pages/batch.py", title="Batch", icon=":material/play_circle:"),
]
st.navigation(pages).run()
st.sidebar.caption(f"Data: `{settings.home}`")
