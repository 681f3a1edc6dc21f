"""Worklist: every patient of the latest batch (or one model version) with risk, interval and flags."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import data_access as da
from dashboard.store_queries import RISK_BANDS, SORTABLE, WorklistFilters, WorklistScope
from ingestion.modalities import MODALITIES

settings = da.app_settings()
auth.guard(settings, "worklist", "open the worklist")
st.title("Worklist")
if message := st.session_state.pop("batch_message", None):
    st.success(message)

pred_dir = str(settings.predictions_dir)
version = da.predictions_version(settings)
if not version:
    st.info(f"No predictions yet in `{settings.predictions_dir}`. Run a batch on the Batch page, or "
            "`clinfuse predict`, and the patients appear here.")
    st.page_link("pages/batch.py", label="Run a batch prediction", icon=":material/play_circle:")
    st.stop()

batches = da.batches(pred_dir, version)
versions = da.model_versions(pred_dir, version)
scopes: dict[str, WorklistScope] = {f"Latest batch ({batches.iloc[0]['batch_id']})": WorklistScope()}
scopes.update({f"Batch {b} (model v{v})": WorklistScope(batch_id=str(b))
               for b, v in zip(batches["batch_id"].iloc[1:], batches["model_version"].iloc[1:])})
scopes.update({f"Model version {v} (latest per patient)": WorklistScope(model_version=v) for v in versions})

with st.sidebar:
    scope_label = st.selectbox("Predictions", list(scopes), key="wl_scope",
                               help="The latest batch, an earlier batch, or the latest prediction per patient "
                                    "of one model version.")
    scope = scopes[scope_label]
    bands = st.multiselect("Risk band", [name for name, _, _ in RISK_BANDS], key="wl_bands",
                           help="Low < 30 %, medium 30–60 %, high ≥ 60 % calibrated risk. Empty = all.")
    require = st.multiselect("Acquired modalities", list(MODALITIES), key="wl_present",
                             help="Only patients for whom all of these modalities were acquired (present).")
    imputed_only = st.checkbox("Only with imputed modalities", key="wl_imputed")
    abstain_only = st.checkbox("Only abstentions", key="wl_abstain")

# The date bounds come from the unfiltered scope so the picker always spans the data.
everything = da.worklist(pred_dir, version, scope, WorklistFilters())
first_day: date = pd.Timestamp(everything.rows["predicted_at"].min()).date()
last_day: date = pd.Timestamp(everything.rows["predicted_at"].max()).date()
c1, c2, c3, c4 = st.columns([2, 2, 1.4, 1])
search = c1.text_input("Search pseudonymous id", key="wl_search", placeholder="e.g. P3a9f",
                       help="Matches any part of the pseudonymous patient id.")
days = c2.date_input("Predicted between", (first_day, last_day), min_value=first_day, max_value=last_day,
                     key="wl_dates")
sort_by = c3.selectbox("Sort by", SORTABLE, key="wl_sort")
descending = c4.toggle("Descending", True, key="wl_desc")
day_from, day_to = (days if isinstance(days, tuple | list) and len(days) == 2 else (first_day, last_day))

filters = WorklistFilters(risk_bands=tuple(bands), require_present=tuple(require), imputed_only=imputed_only,
                          abstain_only=abstain_only, date_from=day_from, date_to=day_to, search=search,
                          sort_by=sort_by, descending=descending)
result = da.worklist(pred_dir, version, scope, filters)
rows = result.rows
if result.hidden_non_pseudonymous:
    st.warning(f"{result.hidden_non_pseudonymous} prediction rows carry an id that is not a pseudonym and are "
               "hidden: the dashboard never shows original identifiers. Re-run ingestion for those patients.")

st.caption(f"{result.scope_label} · **{len(rows)}** of {len(everything.rows)} patients match")
if rows.empty:
    st.info("No patient matches these filters.")
    st.stop()

table = pd.DataFrame({
    "patient": rows["patient_id"],
    "risk": rows["risk"],
    "interval": [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(rows["risk_low"], rows["risk_high"])],
    "band": rows["band"],
    "abstained": rows["abstain"],
    "imputed": rows["imputed"],
    "missing": rows["missing"],
    "predicted": rows["predicted_at"],
    "model": "v" + rows["model_version"].astype(str),
})
latest_reviews = auth.review_store(settings).latest()  # clinician-confirmed outcomes (newest per patient)
table["review"] = [latest_reviews[p].outcome if p in latest_reviews else "" for p in rows["patient_id"]]
event = st.dataframe(
    table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="wl_table",
    column_config={
        "risk": st.column_config.ProgressColumn("risk", format="percent", min_value=0.0, max_value=1.0),
        "abstained": st.column_config.CheckboxColumn("abstained", help="The model abstained; see the reason."),
        "imputed": st.column_config.TextColumn("imputed", help="Modalities rebuilt by cross-profiling imputation."),
        "predicted": st.column_config.DatetimeColumn("predicted (UTC)", format="YYYY-MM-DD HH:mm"),
    },
)
selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
if selected:
    st.switch_page("pages/patient.py", query_params={"patient": rows.iloc[selected[0]]["patient_id"]})

c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
pick = c1.selectbox("Patient", rows["patient_id"].tolist(), key="wl_pick",
                    help="Or click a row of the table.")
if c2.button("Open patient view", type="primary", key="wl_open"):
    st.switch_page("pages/patient.py", query_params={"patient": pick})
export = rows.drop(columns=["has_imputed"]).copy()
export["predicted_at"] = export["predicted_at"].astype(str)
c3.download_button("Export CSV", export.to_csv(index=False).encode("utf-8"), file_name="clinfuse-worklist.csv",
                   mime="text/csv", key="wl_csv", help="The filtered list, every column, pseudonymous ids only.",
                   disabled=not auth.can("export_csv"),
                   on_click=auth.audit, args=(settings, "export_csv", None, f"{len(export)} rows"))
