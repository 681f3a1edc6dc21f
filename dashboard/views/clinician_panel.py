"""The clinician's part of the patient view: reveal the MRN (audited) and record the confirmed outcome.

Both draw only for roles holding the permission (``reveal_mrn``, ``review``);
an analyst's view has neither, not even a disabled button. The MRN is kept in
the session only while the same patient is shown and is never written anywhere
but the screen; the audit entry names the pseudonym.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import auth
from flows.access.reviews import MAX_COMMENT, OUTCOMES, PredictionRef
from flows.settings import Settings

REVEALED_KEY = "clinfuse_revealed"


def _key(settings: Settings) -> bytes | None:
    try:
        return settings.reid_key_bytes()
    except (OSError, ValueError) as exc:
        st.error(f"Re-identification key unavailable: {exc}")
        return None


def render_reveal(settings: Settings, patient_id: str) -> None:
    """The reveal-MRN button for clinicians; one audit entry per reveal."""
    if not auth.can("reveal_mrn"):
        return
    from ingestion.deid.reidentify import ReidKeyError, reveal

    key = _key(settings)
    if key is None:
        st.caption("Re-identification is not configured on this site: pseudonymous ids only.")
        return
    revealed = st.session_state.get(REVEALED_KEY)
    if revealed and revealed[0] == patient_id:
        st.warning(f"**MRN: {revealed[1]}** — revealed to you and recorded in the audit trail.",
                   icon=":material/badge:")
        return
    if st.button("Reveal MRN", key="reveal_mrn", icon=":material/visibility:",
                 help="Shows the original medical record number; every reveal is audited."):
        try:
            mrn = reveal(settings.reid_map_path, key, patient_id)
        except ReidKeyError as exc:
            st.error(str(exc))
            return
        auth.audit(settings, "reveal_mrn", patient_id, "found" if mrn else "not in the map")
        if mrn is None:
            st.info("This pseudonym is not in the re-identification map (ingested without a key or not in the "
                    "cohort table).")
            return
        st.session_state[REVEALED_KEY] = (patient_id, mrn)
        st.rerun()


def render_reviews(settings: Settings, patient_id: str, row: pd.Series | None) -> None:
    """Earlier reviews of the patient, and the review form for clinicians."""
    if flash := st.session_state.pop("review_flash", None):
        st.success(flash)
    store = auth.review_store(settings)
    reviews = store.for_patient(patient_id)
    if reviews:
        st.dataframe(pd.DataFrame([{"outcome": r.outcome, "by": r.username, "at (UTC)": r.created_at,
                                    "model": f"v{r.prediction.model_version}" if r.prediction.model_version else "",
                                    "comment": r.comment} for r in reviews]),
                     hide_index=True, width="stretch", key=f"reviews_{patient_id}")
    elif not auth.can("review"):
        st.caption("No clinician review yet.")
    if not auth.can("review"):
        return
    with st.form(f"review_{patient_id}", clear_on_submit=True):
        outcome = st.radio("Confirmed outcome", OUTCOMES, horizontal=True, key="review_outcome", index=None)
        comment = st.text_area("Comment", max_chars=MAX_COMMENT, key="review_comment",
                               placeholder="Short clinical note; no names or identifiers.")
        submitted = st.form_submit_button("Record review")
    if not submitted:
        return
    if outcome is None:
        st.error("Choose the confirmed outcome.")
        return
    revealed = st.session_state.get(REVEALED_KEY)
    if revealed and revealed[0] == patient_id and revealed[1] and revealed[1] in comment:
        st.error("The comment contains the patient's MRN; reviews hold pseudonymous data only.")
        return
    ref = PredictionRef() if row is None else PredictionRef(
        str(row.get("run_id") or "") or None, str(row.get("model_version") or "") or None,
        str(row.get("batch_id") or "") or None, float(row["risk"]) if pd.notna(row.get("risk")) else None)
    user = auth.current_user()
    store.add(patient_id, outcome, comment, user.username, user.role, ref)
    auth.audit(settings, "review", patient_id, outcome)
    st.session_state["review_flash"] = (f"Review recorded: {outcome}. Confirmed outcomes become labels at the "
                                        "next training run.")
    st.rerun()
