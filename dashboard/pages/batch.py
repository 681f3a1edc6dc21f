"""Batch page: pick a cohort folder or upload a zip, run batch prediction through the flow, then see the worklist."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth
from dashboard import data_access as da
from dashboard.batch_trigger import DEPLOYMENT_NAME, run_batch, unpack_zip

settings = da.app_settings()
auth.guard(settings, "batch", "run batch predictions")
st.title("Batch prediction")
where = (f"the Prefect deployment `{DEPLOYMENT_NAME}` on {settings.prefect_api_url}" if settings.prefect_api_url
         else "a child `clinfuse predict` process (no Prefect server configured)")
st.caption(f"Runs the prediction flow through {where}. The flow ingests, encodes and predicts; "
           "the dashboard only starts it and shows the results.")

source = st.radio("Cohort", ["Folder on this machine", "Upload a zip"], horizontal=True, key="batch_source")
cohort: Path | None = None
upload = None
if source == "Folder on this machine":
    folder = st.text_input("Cohort folder", key="batch_folder", placeholder="/data/exports/cohort-2025-03",
                           help="A cohort export: cohort.csv plus dicom/, eeg/ and notes/ folders.")
    if folder:
        cohort = Path(folder).expanduser()
        if not cohort.is_dir():
            st.error(f"`{cohort}` is not a folder on this machine.")
            cohort = None
        else:
            n_files = sum(1 for p in cohort.rglob("*") if p.is_file())
            has_table = (cohort / "cohort.csv").is_file()
            st.caption(f"{n_files} files" + ("" if has_table else " · no cohort.csv at the top level"))
else:
    upload = st.file_uploader("Cohort zip", type=["zip"], key="batch_zip",
                              help="A zip of a cohort export folder; unpacked into a temporary folder.")

if st.button("Run batch prediction", type="primary", key="batch_run", disabled=cohort is None and upload is None):
    bar = st.progress(0.0, text="Starting…")
    try:
        target = cohort if cohort is not None else unpack_zip(upload.getvalue())
    except ValueError as exc:
        st.error(f"Cannot use this upload: {exc}")
        st.stop()
    auth.audit(settings, "batch_trigger", detail="uploaded zip" if upload is not None else "cohort folder")
    with st.status("Running batch prediction…", expanded=True) as status:
        outcome = run_batch(target, settings.prefect_api_url, lambda f, text: bar.progress(f, text=text),
                            home=settings.home)
        status.update(label=outcome.message, state="complete" if outcome.ok else "error")
    if outcome.ok:
        st.session_state["batch_message"] = outcome.message
        st.switch_page("pages/worklist.py")
    st.error(outcome.message)
