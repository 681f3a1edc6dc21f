"""``--impute auto``: pick the imputation method by nested validation on the training patients alone.

Why nested: the method is a hyper-parameter like any other, so choosing it on
the held-out patients would make their AUROC optimistic. Each candidate is
trained by the same recipe (:func:`models.training.train.train`, passed in by its caller so that
this module does not import it back) on ``folds - 1`` folds of
the training patients and scored (AUROC) on the remaining fold; the held-out
split is never passed in. The comparison table travels with the model (its
``metrics``) so MLflow and the model's page can show why a method was chosen.
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


def _fold_scores(features: FeatureSet, config: "TrainConfig", train: "TrainFn", method: str,
                 folds: int) -> list[float]:
    y = np.asarray(features.labels).astype(int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    scores = []
    for inner_train, inner_val in splitter.split(np.zeros(len(y)), y):
        model = train(features.subset(inner_train), replace(config, impute=method, n_calibrators=0))
        risk = model.predict_risk(features.subset(inner_val))
        scores.append(float(roc_auc_score(y[inner_val], risk)))
    return scores


def select_imputer(features: FeatureSet, config: "TrainConfig", train: "TrainFn",
                   candidates: tuple[str, ...] = CANDIDATES, folds: int = FOLDS) -> tuple[str, pd.DataFrame]:
    """The best candidate by mean inner-fold AUROC, and the table (method, per-fold AUROC, mean, sd).

    ``train`` fits one model (:func:`models.training.train.train`). ``features`` must hold training patients only. Folds shrink to what the
    smaller class allows (at least 2).
    """
    y = np.asarray(features.labels).astype(int)
    folds = int(max(2, min(folds, np.bincount(y, minlength=2).min())))
    rows = []
    for method in candidates:
        scores = _fold_scores(features, config, train, method, folds)
        rows.append({"method": method, **{f"fold{i + 1}_auroc": s for i, s in enumerate(scores)},
                     "mean_auroc": float(np.mean(scores)), "sd_auroc": float(np.std(scores))})
    table = pd.DataFrame(rows)
    best = int(np.argmax(table["mean_auroc"].to_numpy()))  # first maximum: ties go to the simpler method
    table["chosen"] = np.arange(len(table)) == best
    return str(table.loc[best, "method"]), table


def selection_record(table: pd.DataFrame, chosen: str) -> dict:
    """What the model keeps in ``metrics['impute_selection']``: JSON-ready."""
    return {"requested": "auto", "chosen": chosen, "table": table.round(6).to_dict(orient="records")}
