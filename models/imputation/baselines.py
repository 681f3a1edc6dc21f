"""Complete-case training: the textbook baseline every imputation method must beat.

Fits only on patients who have every modality the cohort has (the model never
sees an absence while learning) and, since a deployed model must still answer
for incomplete patients, fills their missing modalities with the complete
cases' mean at transform time. Follows scikit-learn (``fit`` learns attributes
ending in ``_``); :meth:`CompleteCaseImputer.training_rows` tells the training
loop which rows to learn from.
"""

from __future__ import annotations

import numpy as np

from models.features.feature_set import FeatureSet
from models.imputation.methods import ImputedFeatures, MeanImputer, imputable

MIN_COMPLETE = 20
"""Below this many complete patients complete-case training cannot learn; every patient is kept instead."""


def complete_rows(features: FeatureSet) -> np.ndarray:
    """Bool per row: present in every modality that some patient has (absent-everywhere ones are ignored)."""
    usable = imputable(features, 1)
    return features.mask[:, usable].all(axis=1) if usable.any() else np.ones(len(features), bool)


class CompleteCaseImputer(MeanImputer):
    """Learn from complete patients only; fill the gaps of incomplete ones with the complete cases' mean."""

    method = "complete_case"

    def fit(self, features: FeatureSet) -> "CompleteCaseImputer":
        rows = complete_rows(features)
        self.n_complete_ = np.array(int(rows.sum()))
        super().fit(features.subset(rows) if rows.sum() >= MIN_COMPLETE else features)
        return self

    def training_rows(self, features: FeatureSet) -> np.ndarray:
        """Rows of ``features`` the model may learn from (all of them when too few are complete)."""
        rows = complete_rows(features)
        return rows if rows.sum() >= MIN_COMPLETE else np.ones(len(features), bool)

    def transform(self, features: FeatureSet) -> ImputedFeatures:
        out = super().transform(features)
        return ImputedFeatures(out.features, out.imputed, out.uncertainty, out.donors, self.method)
