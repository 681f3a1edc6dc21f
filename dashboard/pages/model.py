"""Model page: registered versions and aliases, the champion's metrics and plots, a link to the MLflow UI."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import data_access as da

settings = da.app_settings()
auth.guard(settings, "model", "open the model pages")
st.title("Model")
snap = da.registry(settings)

if snap.ui_url:
    st.link_button("Open the MLflow UI", snap.ui_url, icon=":material/open_in_new:")
else:
    st.caption("MLflow UI: run `mlflow ui --backend-store-uri "
               f"{settings.tracking_uri}` and open http://127.0.0.1:5000, or set a tracking server URL.")

if not snap.available:
    st.info(snap.message, icon=":material/info:")
    st.stop()
if snap.message:
    st.warning(snap.message)

st.subheader("Registered versions of `clinfuse`")
st.dataframe(snap.versions, hide_index=True, width="stretch",
             column_config={"created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm")})
if snap.champion_version is None:
    st.stop()

st.subheader(f"Champion: version {snap.champion_version}")
st.caption(f"Run `{snap.champion_run_id}`")
headline = [k for k in ("auroc", "auprc", "brier", "ece") if k in snap.champion_metrics]
if headline:
    for col, name in zip(st.columns(len(headline)), headline):
        col.metric(name.upper(), f"{snap.champion_metrics[name]:.3f}")
if snap.champion_metrics:
    metrics = pd.DataFrame(sorted(snap.champion_metrics.items()), columns=["metric", "value"])
    with st.expander(f"All {len(metrics)} metrics", expanded=not headline):
        st.dataframe(metrics, hide_index=True, width="stretch")
else:
    st.info("The champion's run logged no metrics.")
if snap.plots:
    st.subheader("Evaluation plots")
    cols = st.columns(2)
    for i, (name, data) in enumerate(snap.plots):
        cols[i % 2].image(data, caption=name, width="stretch")
else:
    st.info("The champion's run has no PNG plots (calibration, AUROC vs missing rate) among its artifacts.")
