"""The champion's model card on the Model page: banner, intended use, data, plots, subgroups, limitations.

Reads only the card's JSON (numbers) and its PNGs as logged to the champion's
MLflow run; the tables are built by the same functions that write the card's
Markdown, so the page and ``model_card.md`` cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from models.model_card_text import candidates_text, splits_table, subgroup_table


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _interval(block: Mapping[str, Any], key: str) -> str:
    return f"95 % interval {_fmt(block.get(f'{key}_low'))} - {_fmt(block.get(f'{key}_high'))}"


def render_banner(card: Mapping[str, Any]) -> None:
    """The "Not validated for clinical use" banner, or the rule it was checked against when it is absent."""
    rule = card["banner_rule"]
    if card.get("banner"):
        st.error(card["banner"], icon=":material/dangerous:")
    else:
        st.success(f"Held-out AUROC interval above {rule['auroc_low_bar']:.2f} on at least {rule['min_held_out']} "
                   "patients. Research use only all the same: see the intended use.", icon=":material/info:")


def render_headline(card: Mapping[str, Any]) -> None:
    """Held-out AUROC, answered AUROC, abstention, ECE before/after calibration, candidates compared."""
    perf, cal, ab = card["performance"], card["calibration"], card["abstention"]
    n = card["data"]["splits"].get("held-out", {}).get("n")
    cells = [("Held-out AUROC", _fmt(perf.get("auroc")), f"{_interval(perf, 'auroc')} on {n} patients"),
             ("Answered AUROC", _fmt(ab.get("answered_auroc")), "AUROC of the patients the model did not abstain on"),
             ("Abstained", _fmt(ab.get("abstain_rate"), "{:.1%}"), "share of held-out patients without an answer"),
             ("ECE calibrated", _fmt(cal.get("ece")), _interval(cal, "ece")),
             ("ECE uncalibrated", _fmt(cal.get("ece_uncalibrated")), "before the calibrator"),
             ("Candidates", str(card["candidates"]["count"] or "?"),
              "compared on these held-out patients: " + card["candidates"]["how"])]
    for col, (label, value, why) in zip(st.columns(len(cells)), cells):
        col.metric(label, value, help=why)


def render(card: Mapping[str, Any], plots: Mapping[str, bytes]) -> None:
    """The whole card, top to bottom in the order a reader needs it."""
    st.subheader("Model card")
    render_banner(card)
    st.caption(card["title"])
    st.markdown("**Intended use.** " + card["intended_use"])
    render_headline(card)
    st.caption(candidates_text(card))
    st.markdown("**Data**")
    st.dataframe(splits_table(card), hide_index=True, width="stretch")
    prov = ", ".join(f"{k}: {v}" for k, v in card["data"]["label_provenance"].items())
    st.caption(f"Label provenance (held-out patients): {prov}.")
    cols = st.columns(2)
    for col, role, caption in ((cols[0], "roc", "ROC on the held-out patients"),
                               (cols[1], "reliability", "Reliability, calibrated and uncalibrated")):
        if role in plots:
            col.image(plots[role], caption=caption, width="stretch")
        else:
            col.info(f"The card's {role} plot was not logged with the run.")
    st.markdown("**Subgroups**")
    rule = card["subgroup_rule"]
    st.caption(f"AUROC per subgroup with 95 % patient-bootstrap intervals; \"too few\" below {rule['min_patients']} "
               f"patients or {rule['min_per_class']} of either class.")
    st.dataframe(subgroup_table(card), hide_index=True, width="stretch")
    if card.get("demographics_absent"):
        st.caption(f"Not in the cohort table, so not checked: {', '.join(card['demographics_absent'])}.")
    st.markdown("**Limitations**\n\n" + "\n".join(f"- {line}" for line in card["limitations"]))
