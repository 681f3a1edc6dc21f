"""The device-dependent paths of training and encoding: what broke, or never applied, on CUDA.

Found by ``benchmarks/bench_gpu.py`` on a lent GPU machine. The CPU tests below check the
behaviour each fix relies on; the CUDA tests run only where torch sees a GPU (never in CI).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.encoders.base import auto_batch_size
from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.fusion.inputs import to_inputs
from models.training.train import TrainConfig, modality_dropout, train

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def small_cohort():
    cohort = synthetic_cohort(120, dim=8, seed=5, interaction_fraction=0.0)
    return apply_missingness(cohort.features, 0.3, "mcar", 2)


class _StringDeviceEncoder:
    """Shaped like the note encoder, which keeps its device as a string."""

    activation_bytes = 64 << 20

    def __init__(self, device: str) -> None:
        self.device = device


def test_auto_batch_size_sizes_string_device_encoders_by_gpu_memory(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 16 << 30))
    assert auto_batch_size(_StringDeviceEncoder("cuda")) == (8 << 30) // 2 // (64 << 20)  # was the CPU default
    assert auto_batch_size(_StringDeviceEncoder("cpu")) == 16


def test_modality_dropout_draws_from_the_generator_device() -> None:
    """Same hidden modalities as drawing straight from the (CPU) generator: one seed, one result."""
    mask = torch.ones(50, 4, dtype=torch.bool)
    got = modality_dropout(mask, 0.4, torch.Generator().manual_seed(3))
    expected = torch.rand(mask.shape, generator=torch.Generator().manual_seed(3)) < 0.4
    kept = mask & ~expected
    assert torch.equal(got, torch.where((~kept.any(-1))[:, None], mask, kept))


def test_with_mask_takes_numpy_coalitions(small_cohort) -> None:
    inputs = to_inputs(small_cohort)
    narrowed = inputs.with_mask(np.zeros(small_cohort.mask.shape, bool))
    assert isinstance(narrowed.mask, torch.Tensor) and narrowed.mask.device == inputs.mask.device
    assert not narrowed.imputed.any()


@needs_cuda
def test_modality_dropout_on_cuda_matches_cpu() -> None:
    mask = torch.ones(50, 4, dtype=torch.bool)
    on_cpu = modality_dropout(mask, 0.4, torch.Generator().manual_seed(3))
    on_gpu = modality_dropout(mask.cuda(), 0.4, torch.Generator().manual_seed(3))
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), on_cpu)


@needs_cuda
def test_train_and_predict_on_cuda(small_cohort) -> None:
    model = train(small_cohort, TrainConfig(fusion="early", epochs=5, hidden=8, patience=5, device="cuda"))
    pred = model.predict(small_cohort, n_mc=4)
    assert pred["risk"].between(0, 1).all() and len(pred) == len(small_cohort)
