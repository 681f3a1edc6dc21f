"""``--impute auto``: pick the imputation method by nested validation on the training patients alone.

Why nested: the method is a hyper-parameter like any other, so choosing it on
the held-out patients would make their AUROC optimistic. Each candidate is
trained by the same recipe (:func:`models.training.train.train`, passed in by its caller so that
this module does not import it back) on ``folds - 1`` folds of
the training patients and scored (AUROC) on the remaining fold; the held-out
split is never passed in. The comparison table travels with the model (its
``metrics``) so MLflow and the model's page can show why a method was chosen.

Each inner fold is scored twice: as it is, and with each modality of each
patient hidden with probability ``PROBE_RATE`` (at least one kept); the
criterion is the mean of the two. Why: the method only matters where a
modality is missing. On a training cohort with every modality present (the
scenario "complete training, modalities missing at deployment") every candidate
scored the same on the folds as they are, and the tie went to zero-fill, the
weakest method once modalities go missing (quality benchmark, files cohort:
zero-fill 0.690 against cross-profiling 0.709 in that scenario).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from models.features.feature_set import FeatureSet

if TYPE_CHECKING:
    from models.training.config import TrainConfig
    from models.training.trained_model import TrainedModel

    TrainFn = Callable[[FeatureSet, TrainConfig], TrainedModel]

CANDIDATES: tuple[str, ...] = ("zero", "mean", "complete_case", "cross_profile")
"""Order breaks ties: the simpler method wins an exact tie."""
FOLDS = 3
PROBE_RATE = 0.5


def hide_modalities(mask: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """``mask`` with each present modality hidden with probability ``rate``; a patient keeps at least one."""
    rng = np.random.default_rng(seed)
    kept = mask & (rng.random(mask.shape) >= rate)
    for i in np.flatnonzero(~kept.any(1) & mask.any(1)):
        kept[i, rng.choice(np.flatnonzero(mask[i]))] = True
    return kept


def _fold_scores(features: FeatureSet, config: "TrainConfig", train: "TrainFn", method: str,
                 folds: int) -> tuple[list[float], list[float]]:
    """Per inner fold: AUROC on the fold as it is, and with modalities hidden (the same draw for every method)."""
    y = np.asarray(features.labels).astype(int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    as_is, hidden = [], []
    for k, (inner_train, inner_val) in enumerate(splitter.split(np.zeros(len(y)), y)):
        model = train(features.subset(inner_train), replace(config, impute=method, n_calibrators=0))
        val = features.subset(inner_val)
        as_is.append(float(roc_auc_score(y[inner_val], model.predict_risk(val))))
        probe = val.with_mask(hide_modalities(val.mask, PROBE_RATE, config.seed + k))
        hidden.append(float(roc_auc_score(y[inner_val], model.predict_risk(probe))))
    return as_is, hidden


def select_imputer(features: FeatureSet, config: "TrainConfig", train: "TrainFn",
                   candidates: tuple[str, ...] = CANDIDATES, folds: int = FOLDS) -> tuple[str, pd.DataFrame]:
    """The best candidate by mean inner-fold AUROC (as is and with modalities hidden), and the table.

    ``train`` fits one model (:func:`models.training.train.train`). ``features`` must hold training patients only. Folds shrink to what the
    smaller class allows (at least 2).
    """
    y = np.asarray(features.labels).astype(int)
    folds = int(max(2, min(folds, np.bincount(y, minlength=2).min())))
    rows = []
    for method in candidates:
        as_is, hidden = _fold_scores(features, config, train, method, folds)
        scores = [(a + h) / 2 for a, h in zip(as_is, hidden)]
        rows.append({"method": method, **{f"fold{i + 1}_auroc": s for i, s in enumerate(as_is)},
                     **{f"fold{i + 1}_auroc_hidden": s for i, s in enumerate(hidden)},
                     "mean_auroc_as_is": float(np.mean(as_is)), "mean_auroc_hidden": float(np.mean(hidden)),
                     "mean_auroc": float(np.mean(scores)), "sd_auroc": float(np.std(scores))})
    table = pd.DataFrame(rows)
    best = int(np.argmax(table["mean_auroc"].to_numpy()))  # first maximum: ties go to the simpler method
    table["chosen"] = np.arange(len(table)) == best
    return str(table.loc[best, "method"]), table


def selection_record(table: pd.DataFrame, chosen: str) -> dict:
    """What the model keeps in ``metrics['impute_selection']``: JSON-ready."""
    return {"requested": "auto", "chosen": chosen, "table": table.round(6).to_dict(orient="records")}
