"""Patient view: the prediction and why, then each modality's viewer, or an explicit box when it is missing."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard import auth
from dashboard import data_access as da
from dashboard.store_queries import PSEUDONYM_RE
from dashboard.views.clinician_panel import render_reveal, render_reviews
from dashboard.views.ct_viewer import render_ct
from dashboard.views.eeg_viewer import render_eeg
from dashboard.views.note_viewer import render_note
from dashboard.views.prediction_panel import render_prediction
from dashboard.views.xray_viewer import render_xray
from ingestion.modalities import MODALITIES

LABELS = {"ct": "CT", "xray": "X-ray", "eeg": "EEG", "note": "Note", "ecg": "ECG"}

settings = da.app_settings()
auth.guard(settings, "patient", "open the patient view")
pred_dir = str(settings.predictions_dir)
version = da.predictions_version(settings)
requested = st.query_params.get("patient") or st.session_state.get("patient_id") or ""

known: list[str] = []
if version:
    known = sorted(da.worklist(pred_dir, version, da.WorklistScope(), da.WorklistFilters()).rows["patient_id"])
if requested and not PSEUDONYM_RE.match(requested):
    st.error("That is not a pseudonymous patient id (P followed by 12 hex digits); the dashboard only "
             "looks patients up by pseudonym.")
    requested = ""
options = known if requested in known or not requested else [requested, *known]
if not options:
    st.title("Patient")
    st.info("No patients yet: run a batch prediction, then open a patient from the worklist.")
    st.stop()
index = options.index(requested) if requested in options else 0
patient_id = st.sidebar.selectbox("Patient", options, index=index, help="Pseudonymous id of the patient to show.")
if patient_id != st.query_params.get("patient"):
    st.query_params["patient"] = patient_id
st.session_state["patient_id"] = patient_id
if st.session_state.get("audited_patient") != patient_id:  # one entry per patient opened, not per rerun
    auth.audit(settings, "view_patient", patient_id)
    st.session_state["audited_patient"] = patient_id
st.title(f"Patient {patient_id}")
render_reveal(settings, patient_id)

predictions = da.patient_predictions(pred_dir, version, patient_id)
items = da.patient_items(str(settings.manifest_path), da.manifest_version(settings), patient_id)
row: pd.Series | None = None
if predictions.empty:
    st.warning("No prediction for this patient yet; the acquired modalities are shown below.")
else:
    labels = [f"batch {b} · model v{v}" for b, v in zip(predictions["batch_id"], predictions["model_version"])]
    chosen = st.sidebar.selectbox("Prediction", labels, index=0, key=f"pred_pick_{patient_id}",
                                  help="Newest first; earlier batches show how the risk changed.")
    row = predictions.iloc[labels.index(chosen)]
    with st.container(border=True):
        render_prediction(row)
with st.expander("Clinician review", expanded=auth.can("review"), icon=":material/rate_review:"):
    render_reviews(settings, patient_id, row)


def _status_box(modality: str, mask: str | None, quarantined: pd.DataFrame) -> None:
    """The explicit box shown instead of an image when a modality has nothing to view."""
    label = LABELS[modality]
    for reason in quarantined.get("reason", pd.Series(dtype=str)):
        st.error(f"**{label}: quarantined** — {reason or 'no reason recorded'}")
    if mask == "imputed":
        st.info(f"**{label}: missing — not acquired.** Its embedding was imputed for this prediction "
                "from the patient's other modalities and donor patients (see the prediction panel); "
                "there is no image to show.", icon=":material/auto_fix_high:")
    else:
        st.info(f"**{label}: missing — not acquired.**", icon=":material/block:")


def _viewer(modality: str, item: pd.Series) -> None:
    meta = json.loads(item.get("meta_json") or "{}")
    try:
        if modality == "note":
            render_note(da.note(settings.home, item["array_uri"]), key=f"note_{patient_id}")
            return
        arr = da.array(settings.home, item["array_uri"])
    except (OSError, ValueError) as exc:
        st.error(f"**{LABELS[modality]}: cannot be shown** — {exc}. Re-run ingestion to rebuild the array.")
        return
    if modality == "ct":
        render_ct(arr, meta, key=f"ct_{patient_id}")
    elif modality == "xray":
        render_xray(arr, meta, key=f"xray_{patient_id}")
    elif modality == "ecg":  # the same stacked traces, one per lead (values in mV, not µV)
        leads = {"channels": meta.get("leads"), "missing_channels": [
            lead for lead, ok in zip(meta.get("leads", []), meta.get("leads_present", [])) if not ok]}
        render_eeg(arr, {**meta, **leads}, float(meta.get("sfreq") or 100.0), key=f"ecg_{patient_id}")
    else:
        render_eeg(arr, meta, settings.eeg_sfreq, key=f"eeg_{patient_id}")


OPTIONAL = ("ecg",)
"""Modalities many sites never acquire: a tab only when this patient has an item or the model used one."""


def _shown(m: str) -> bool:
    has = not items.empty and bool((items["modality"] == m).any())
    used = row is not None and row.get(f"mask_{m}") in ("present", "imputed")
    return m not in OPTIONAL or has or used


shown = [m for m in MODALITIES if _shown(m)]
tab_labels = []
for m in shown:
    ok = items[(items["modality"] == m) & (items["status"] == "ok")] if not items.empty else items
    mask = row.get(f"mask_{m}") if row is not None else None
    tab_labels.append(LABELS[m] + ("" if len(ok) else f" ({mask or 'missing'})"))
for m, tab in zip(shown, st.tabs(tab_labels)):
    with tab:
        mod_items = items[items["modality"] == m] if not items.empty else items
        ok = mod_items[mod_items["status"] == "ok"] if not mod_items.empty else mod_items
        mask = row.get(f"mask_{m}") if row is not None else None
        if ok.empty:
            _status_box(m, mask, mod_items[mod_items["status"] == "quarantined"] if not mod_items.empty
                        else mod_items)
            continue
        if len(ok) > 1:
            pick = st.selectbox(f"{LABELS[m]} item", range(len(ok)), key=f"{m}_item_{patient_id}",
                                format_func=lambda i, ok=ok: f"{i + 1}: ingested "
                                f"{pd.Timestamp(ok.iloc[i]['ingested_at']):%Y-%m-%d}")
        else:
            pick = 0
        for reason in mod_items[mod_items["status"] == "quarantined"]["reason"]:
            st.caption(f"Another {LABELS[m]} item was quarantined: {reason}")
        _viewer(m, ok.iloc[pick])
