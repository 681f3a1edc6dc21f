"""A binary AUROC without scikit-learn's input checks, for the training loops.

Why: training scores its validation split after every epoch and every candidate (about 900 calls in a
200-patient run of the demo), and ``sklearn.metrics.roc_auc_score`` spends ~13 ms a call validating and
binarising its inputs: 11.6 of a 54 s training run, profiled. This is the same number for two classes
(the Mann-Whitney statistic, ties counted half, which is what the trapezoidal ROC area equals); reports
and benchmarks keep scikit-learn's.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def binary_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties half); NaN with one class."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels for {len(s)} scores")
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        return float("nan")
    return float((rankdata(s)[y].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))
