"""The model card in MLflow: fill in how many candidates were compared, then log the card as run artifacts.

Why here and not in the evaluate stage: the number of candidates compared on the
same held-out patients lives in the model registry, which library code never
reads. The champion gate counts them (``looks``: the versions tagged with the
hash of the held-out patients they were compared on, the new one included); this
module writes that count into the card (``models.evaluation.model_card``) and logs
the card's JSON, Markdown and plots under the run's ``evaluation/`` artifacts,
where the dashboard's Model page reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.names import MODEL_NAME
from flows.tracking.registry import HELD_OUT_TAG
from models.evaluation.model_card import CARD_JSON, CARD_MD, RELIABILITY_PNG, ROC_PNG, read_card, record_candidates

ARTIFACT_PATH = "evaluation"
"""Where the run keeps the report folder, card included (the dashboard reads ``evaluation/model_card.json``)."""
GATE_COUNT = (f"the champion gate's count of registered `{MODEL_NAME}` versions carrying this held-out set's "
              f"`{HELD_OUT_TAG}` tag, this one included")


def registry_looks(version: str, client: MlflowClient | None = None, name: str = MODEL_NAME) -> int | None:
    """Registered versions compared on the same held-out patients as ``version`` (None when it has no tag)."""
    client = client or MlflowClient()
    try:
        key = client.get_model_version(name, version).tags.get(HELD_OUT_TAG)
        if not key:
            return None
        return sum(v.tags.get(HELD_OUT_TAG) == key for v in client.search_model_versions(f"name='{name}'"))
    except MlflowException:
        return None


def log_model_card(out_dir: Path, looks: int | None, how: str = GATE_COUNT) -> dict[str, Any] | None:
    """Write ``looks`` into the card in ``out_dir`` and log the card's files to the active run.

    Returns the card, or None when the report folder has no card (a report written before cards existed).
    """
    out_dir = Path(out_dir)
    if not (out_dir / CARD_JSON).exists():
        return None
    card = record_candidates(out_dir, looks, how) if looks is not None else read_card(out_dir)
    for name in (CARD_JSON, CARD_MD, ROC_PNG, RELIABILITY_PNG):
        if (out_dir / name).exists():
            mlflow.log_artifact(str(out_dir / name), artifact_path=ARTIFACT_PATH)
    if looks is not None:
        mlflow.log_metric("model_card.candidates_compared", looks)
    mlflow.set_tag("clinfuse.model_card", "not validated" if card["banner"] else "no banner")
    return card
