"""Exact per-modality Shapley contributions, by masking modalities through the availability mask.

With M = 4 modalities there are only 2^4 = 16 coalitions, so the exact Shapley
value is cheap: evaluate the model once per coalition (the mask restricted to
it) and weight the marginal gains. A modality the patient lacks is a dummy
player (masking it changes nothing), so it gets 0; it is reported as NaN so
that "missing" is not mistaken for "no influence". By construction the
contributions sum to ``value(all available) - value(no modality)``.

The reference (the empty coalition): a network never sees "every modality
masked" in training (modality dropout keeps at least one), so its output there
is out of distribution. A trained model therefore passes ``baseline``: the mean
calibrated risk over its training patients, i.e. what the model says about a
patient before looking at any of their modalities. Every other coalition keeps at
least one modality, a state modality dropout trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import factorial
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ShapleyResult:
    contributions: np.ndarray  # (N, M); NaN for modalities not available to the patient
    baseline: np.ndarray  # (N,) value with every modality masked
    prediction: np.ndarray  # (N,) value with every available modality
    coalition_values: dict[tuple[bool, ...], np.ndarray]  # coalition -> (N,) value

    def mean_abs(self) -> np.ndarray:
        """Average |contribution| per modality over patients who have it."""
        return np.nanmean(np.abs(self.contributions), 0)


def exact_modality_shapley(value_fn: Callable[[np.ndarray], np.ndarray], mask: np.ndarray,
                           baseline: float | None = None) -> ShapleyResult:
    """Shapley value of each modality for each patient.

    ``value_fn(mask) -> (N,)`` evaluates the model with the given availability
    mask (it must ignore masked modalities, as every fusion model here does);
    ``mask`` (N, M) is what each patient has (present or imputed); ``baseline``
    (a number) is the value of the empty coalition instead of ``value_fn`` of
    an all-masked input (see the module docstring).
    """
    mask = np.asarray(mask, bool)
    n, m = mask.shape
    values = {}
    has_any = mask.any(1)
    for coalition in product((False, True), repeat=m):
        eff = mask & np.array(coalition)[None]
        value = np.asarray(value_fn(eff), float)
        if baseline is not None:  # no modality of the coalition available = the reference (see above)
            value = np.where(eff.any(1) | ~has_any, value, float(baseline))
        values[coalition] = value
    phi = np.zeros((n, m))
    for coalition, v in values.items():
        size = sum(coalition)
        for j in range(m):
            if coalition[j]:
                continue
            with_j = list(coalition)
            with_j[j] = True
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            phi[:, j] += weight * (values[tuple(with_j)] - v)
    full = values[(True,) * m]
    empty = values[(False,) * m]
    return ShapleyResult(np.where(mask, phi, np.nan), empty, full, values)
