"""Prediction panel: calibrated risk with its Venn-Abers range, modality contributions, imputation donors, abstention."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.store_queries import parse_donors
from ingestion.modalities import MODALITIES

PATIENT_PAGE = "pages/patient.py"


def contributions_figure(row: pd.Series) -> go.Figure:
    """Horizontal bars of per-modality contributions; missing modalities are labelled, not drawn as zero."""
    labels, values, colours, text = [], [], [], []
    for m in MODALITIES:
        if f"contrib_{m}" not in row.index and f"mask_{m}" not in row.index:
            continue  # a prediction made before this modality existed (e.g. ECG) has no bar for it
        value = row.get(f"contrib_{m}")
        status = row.get(f"mask_{m}", "missing")
        labels.append(f"{m} ({status})")
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        values.append(0.0 if missing else float(value))
        colours.append("#bbbbbb" if missing else ("#d62728" if value > 0 else "#1f77b4"))
        text.append("missing" if missing else f"{value:+.3f}")
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colours, text=text,
                           textposition="outside", cliponaxis=False))
    fig.update_layout(height=220, margin=dict(l=10, r=40, t=10, b=30), xaxis_title="contribution to risk (Shapley)",
                      yaxis=dict(autorange="reversed"))
    return fig


def render_prediction(row: pd.Series) -> None:
    """Draw one prediction row; donor patients link to their own patient page."""
    risk, low, high = float(row["risk"]), float(row["risk_low"]), float(row["risk_high"])
    c1, c2, c3 = st.columns(3)
    c1.metric("Calibrated risk", f"{risk:.0%}", help="Calibrated probability of the positive class.")
    c2.metric("Calibration range", f"{low:.0%} – {high:.0%}",
              help="Venn-Abers range: how far the calibrated risk moves with the calibration patients "
                   "(and, for imputed modalities, with redraws of the imputed data). Not a confidence "
                   "interval for the patient's true risk. The class comes with a conformal set at the "
                   "model's stated level (\"NN % nominal\"). The model abstains when the calibration "
                   "data or the imputed data cannot say which side of the threshold the risk is on.")
    c3.metric("Predicted class", "positive" if int(row["predicted_class"]) == 1 else "negative")
    st.caption(f"Model {row.get('model_name', '')} v{row.get('model_version', '')} · batch {row.get('batch_id', '')}"
               f" · predicted {pd.Timestamp(row['predicted_at']).strftime('%Y-%m-%d %H:%M UTC')}")
    if bool(row.get("abstain")):
        st.warning(f"**Abstained** — {row.get('abstain_reason') or 'no reason recorded'}. "
                   "Review the modalities before acting on this risk.")
    st.plotly_chart(contributions_figure(row), key="contributions")
    donors = parse_donors(row.get("donors_json"))
    imputed = [m for m in MODALITIES if row.get(f"mask_{m}") == "imputed"]
    if not imputed:
        st.caption("No modality was imputed for this prediction.")
        return
    st.markdown("**Imputed modalities** (rebuilt from the patient's other modalities and similar patients):")
    for m in imputed:
        st.markdown(f"*{m.upper()}* — donors:")
        if not donors.get(m):
            st.caption("No donor patients recorded (rebuilt from this patient's own modalities).")
            continue
        cols = st.columns(min(4, len(donors[m])))
        for i, d in enumerate(donors[m]):
            cols[i % len(cols)].page_link(PATIENT_PAGE, label=f"{d['patient_id']} · weight {d['weight']:.2f}",
                                          query_params={"patient": d["patient_id"]}, icon=":material/person:")
