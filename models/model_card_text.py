"""How a model card's numbers read as text and tables: one rendering for ``model_card.md`` and the dashboard.

Kept apart from :mod:`models.evaluation.model_card` (which computes the card) so the dashboard can
present a card without importing the evaluation stage; pure formatting over the card's JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def fmt_value(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def fmt_ci(block: Mapping[str, float | None], key: str) -> str:
    return f"{fmt_value(block.get(key))} [{fmt_value(block.get(f'{key}_low'))}, {fmt_value(block.get(f'{key}_high'))}]"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def splits_table(card: Mapping[str, Any]) -> pd.DataFrame:
    """One row per split: patients, positives (share) and each modality's availability."""
    modalities = card["data"]["modalities"]
    rows = []
    for name, s in card["data"]["splits"].items():
        row = {"split": name, "patients": s["n"], "positives": f"{s['positives']} ({fmt_pct(s['positive_rate'])})"}
        row.update({f"{m} present": fmt_pct(s["availability"].get(m)) for m in modalities})
        rows.append(row)
    return pd.DataFrame(rows)


def subgroup_table(card: Mapping[str, Any]) -> pd.DataFrame:
    """The subgroup rows as shown: AUROC [95 % CI], or "too few"."""
    return pd.DataFrame([{"attribute": r["attribute"], "group": r["group"], "patients": r["n"],
                          "positives": r["positives"],
                          "AUROC [95 % CI]": fmt_ci(r, "auroc") if r["status"] == "ok" else "too few"}
                         for r in card["subgroups"]])


def candidates_text(card: Mapping[str, Any]) -> str:
    """How many candidates were compared on these held-out patients, and how that was counted."""
    c = card["candidates"]
    return (f"{c['count']} candidate(s) compared on these held-out patients ({c['how']})." if c["count"] is not None
            else f"Candidates compared: {c['how']}.")
