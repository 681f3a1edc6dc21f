"""ECG encoder: a small 1-D convolutional network over the 12 leads plus generic spectral features.

Input is the normalised ECG array (float32 ``(n_windows, 12, window_samples)`` in mV,
leads in ``STANDARD_12_LEADS`` order, see CONTRACTS.md). Output is
``concat(network embedding averaged over windows, log10 band power per lead and band,
lead mask)``. The band powers are standard generic features (Welch PSD per lead,
the textbook baseline for ECG classification), so a downstream model has a usable
signal whether or not the network has been pretrained. The encoder must not know how any
synthetic cohort is drawn: no threshold, rhythm or lead geometry taken from a generator.

Reduced montages: the reader leaves absent and bad leads as all-zero rows, so the
mask is read from the array itself. The network sees those rows as zero and the mask
as features; an absent lead's band powers are the mean of the present leads'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from monai.transforms import Compose, RandGaussianNoised, RandScaleIntensityd
from torch import nn

from ingestion.readers.ecg_leads import STANDARD_12_LEADS
from models.encoders.base import Item, TorchEncoder
from models.encoders.eeg import (RandTimeShiftd, TemporalConvNet, band_powers, channel_mask, fill_absent,
                                 window_mean)

BANDS: tuple[tuple[float, float], ...] = ((0.5, 3.0), (3.0, 8.0), (8.0, 15.0), (15.0, 25.0), (25.0, 40.0))
"""Heart-rate / T-wave, P and T waves, QRS body, QRS edges, high-frequency QRS content (Hz)."""


@dataclass(frozen=True)
class ECGConfig:
    """Preprocessing and network shape; all of it enters the encoder version."""

    sfreq: float = 100.0
    max_windows: int = 4
    scale_mv: float = 1.0
    channels: tuple[int, ...] = (32, 32, 32, 32)
    kernel_size: int = 7
    out_dim: int = 32
    bands: tuple[tuple[float, float], ...] = BANDS


class ECGEncoder(TorchEncoder):
    """TCN over windows (mean-pooled) + log band powers per lead + lead mask; ``dim`` = out_dim + 12 * (bands + 1)."""

    name = "ecg-tcn-bands"
    modality = "ecg"
    revision = 1

    def __init__(self, config: ECGConfig | None = None, *, seed: int = 0,
                 encoders_dir: Path | None = None, device: str = "cpu") -> None:
        cfg = config or ECGConfig()
        self.extra_dim = len(STANDARD_12_LEADS) * (len(cfg.bands) + 1)
        super().__init__(cfg, seed=seed, encoders_dir=encoders_dir, device=device)

    @property
    def net_dim(self) -> int:
        return self.config.out_dim

    def build_network(self) -> nn.Module:
        c = self.config
        return TemporalConvNet(len(STANDARD_12_LEADS), c.channels, c.kernel_size, c.out_dim)

    def prepare(self, array: np.ndarray) -> Item:
        data = np.nan_to_num(np.asarray(array, np.float32))
        if data.ndim != 3 or data.shape[1] != len(STANDARD_12_LEADS) or data.shape[0] == 0:
            raise ValueError(f"ECG array must be (n_windows>0, {len(STANDARD_12_LEADS)}, samples), "
                             f"got shape {data.shape}")
        pick = np.unique(np.linspace(0, data.shape[0] - 1, self.config.max_windows).round().astype(int))
        present = channel_mask(data)
        powers = fill_absent(band_powers(data, self.config.sfreq, self.config.bands), present)
        return {"x": data[pick] / self.config.scale_mv,
                "extra": np.concatenate([powers, present.astype(np.float32)])}

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        return window_mean(self.net, items, self.device)

    def augmentation(self) -> Callable[[Item], Item]:
        return Compose([
            RandGaussianNoised(keys="x", prob=0.5, std=0.02),
            RandScaleIntensityd(keys="x", factors=0.1, prob=0.5),
            RandTimeShiftd(keys="x", max_shift=int(self.config.sfreq), prob=0.5),
        ])
