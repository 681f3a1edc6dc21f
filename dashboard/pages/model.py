"""Model page: registered versions and aliases, the champion's metrics and plots, a link to the MLflow UI."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import data_access as da
from dashboard.views import model_card_view

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
if snap.model_card:
    model_card_view.render(snap.model_card, snap.card_plots)
else:
    st.info("The champion's run has no model card (runs logged before cards existed): re-run the train or "
            "evaluate flow to write one.", icon=":material/info:")
HEADLINE = (("AUROC", "auroc"), ("AUPRC", "auprc"), ("Brier", "brier"), ("ECE", "ece"),
            ("Abstained", "abstain_rate"))
"""Label and metric name; training runs log them as ``heldout.<name>`` (+ ``_low``/``_high`` bounds)."""


def _held_out(metrics: dict[str, float], name: str) -> tuple[str, float] | None:
    for key in (f"heldout.{name}", name):  # runs of the train flow log heldout.*, older runs the bare name
        if key in metrics:
            return key, float(metrics[key])
    return None


headline = [(label, found) for label, name in HEADLINE if (found := _held_out(snap.champion_metrics, name))]
if headline:
    st.caption(f"On the held-out patients ({int(snap.champion_metrics.get('heldout.n', 0)) or '?'}), "
               "95 % patient-bootstrap intervals where logged.")
    for col, (label, (key, value)) in zip(st.columns(len(headline)), headline):
        low, high = snap.champion_metrics.get(f"{key}_low"), snap.champion_metrics.get(f"{key}_high")
        shown = f"{value:.1%}" if key.endswith("abstain_rate") else f"{value:.3f}"
        col.metric(label, shown, help=f"{key}" + (f": 95 % interval {low:.3f} - {high:.3f}"
                                                   if low is not None and high is not None else ""))
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
