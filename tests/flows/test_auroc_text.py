"""The AUROC line of `clinfuse pipeline` / `clinfuse evaluate`: a held-out set of one class says so, never "nan"."""

from __future__ import annotations

import numpy as np

from flows.commands.flow_runner import auroc_text
from models.evaluation.metrics import binary_metrics


def test_one_class_held_out_is_named_not_printed_as_nan() -> None:
    metrics = {**binary_metrics(np.zeros(6), np.linspace(0.1, 0.6, 6)), "auroc_low": float("nan"),
               "auroc_high": float("nan")}
    assert auroc_text(metrics) == "undefined (the held-out patients are all of one class)"


def test_two_classes_give_value_and_interval() -> None:
    assert auroc_text({"auroc": 0.8123, "auroc_low": 0.7, "auroc_high": 0.9}) == "0.812 [0.700, 0.900]"
