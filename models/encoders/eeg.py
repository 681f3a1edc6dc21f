"""EEG encoder: a temporal convolutional network per window plus spectral band powers.

Input is the normalised EEG array (float32 ``(n_windows, 19, window_samples)`` in µV,
channels in ``STANDARD_1020`` order, see CONTRACTS.md). Output is
``concat(TCN embedding pooled over windows, log10 band power per channel and band,
|left - right| log power per homologous pair and band)``.
The band powers are fixed features on purpose: focal/hemispheric delta slowing is
the clinically meaningful EEG sign and a per-channel delta power exposes it to any
downstream model whether or not the TCN has been pretrained. Channel order is never
permuted by augmentation (hemisphere is signal).

Reduced montages: the reader leaves absent and bad channels as all-zero rows
(``channels_present`` in the manifest), so the mask is read from the array itself.
The network sees those rows as zero; an absent channel's band powers are the mean
of the present channels' (so a one-lead recording gives its own spectrum on every
channel, not a -6 "no power" floor), and an asymmetry with either side absent is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import mne
import numpy as np
import torch
from monai.transforms import Compose, MapTransform, RandGaussianNoised, RandScaleIntensityd, Randomizable
from torch import nn

from ingestion.modalities import STANDARD_1020
from models.encoders.base import Item, TorchEncoder, to_device

BANDS: dict[str, tuple[float, float]] = {"delta": (0.5, 4.0), "theta": (4.0, 8.0),
                                         "alpha": (8.0, 13.0), "beta": (13.0, 30.0)}
HOMOLOGOUS_PAIRS: tuple[tuple[str, str], ...] = (
    ("Fp1", "Fp2"), ("F7", "F8"), ("F3", "F4"), ("T7", "T8"), ("C3", "C4"), ("P7", "P8"), ("P3", "P4"), ("O1", "O2"))
"""Left/right electrode pairs; |log power difference| per pair and band measures focal asymmetry
whichever side it is on (a linear model cannot derive |L - R| from the per-channel powers)."""


@dataclass(frozen=True)
class EEGConfig:
    """Preprocessing and network shape; all of it enters the encoder version."""

    sfreq: float = 128.0
    max_windows: int = 8
    scale_uv: float = 50.0
    channels: tuple[int, ...] = (32, 32, 32, 32)
    kernel_size: int = 7
    out_dim: int = 32
    bands: tuple[tuple[float, float], ...] = tuple(BANDS.values())


class TemporalConvNet(nn.Module):
    """Dilated 1D conv blocks with residuals and pooling, then mean/std pooling over time."""

    def __init__(self, n_channels: int, widths: Sequence[int], kernel_size: int, out_dim: int) -> None:
        super().__init__()
        blocks, c_in = [], n_channels
        for i, width in enumerate(widths):
            dilation = 2 ** i
            blocks.append(nn.ModuleDict({
                "conv": nn.Conv1d(c_in, width, kernel_size, dilation=dilation,
                                  padding=dilation * (kernel_size - 1) // 2),
                "norm": nn.GroupNorm(4, width),
                "skip": nn.Conv1d(c_in, width, 1) if c_in != width else nn.Identity(),
            }))
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AvgPool1d(2)
        self.head = nn.Linear(2 * c_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = self.pool(torch.relu(block["norm"](block["conv"](x))) + block["skip"](x))
        return self.head(torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=1))


class RandTimeShiftd(Randomizable, MapTransform):
    """Circularly shift every window in time by a random offset (keeps channel order)."""

    def __init__(self, keys: str, max_shift: int, prob: float = 0.5) -> None:
        MapTransform.__init__(self, keys)
        self.max_shift, self.prob, self._shift = max_shift, prob, 0

    def randomize(self, data: object = None) -> None:
        do = self.R.rand() < self.prob
        self._shift = int(self.R.randint(-self.max_shift, self.max_shift + 1)) if do else 0

    def __call__(self, data: Item) -> Item:
        self.randomize()
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = np.roll(np.asarray(out[key]), self._shift, axis=-1)
        return out


def band_powers(windows: np.ndarray, sfreq: float, bands: Sequence[tuple[float, float]]) -> np.ndarray:
    """log10 mean Welch power per (channel, band), averaged over windows: ``(n_channels * n_bands,)``.

    Channel-major: entry ``c * n_bands + b`` is channel ``c``, band ``b``.
    """
    n_fft = int(min(windows.shape[-1], 2 * sfreq))
    psd, freqs = mne.time_frequency.psd_array_welch(
        windows.astype(np.float64), sfreq=sfreq, fmin=bands[0][0], fmax=bands[-1][1],
        n_fft=n_fft, verbose=False)
    psd = psd.mean(axis=0)  # (channels, freqs)
    cols = [psd[:, (freqs >= lo) & (freqs < hi)].mean(axis=1) for lo, hi in bands]
    return np.log10(np.stack(cols, axis=1) + 1e-6).astype(np.float32).reshape(-1)


def channel_mask(windows: np.ndarray) -> np.ndarray:
    """Per channel, True when any sample of any window is non-zero (the reader zeroes absent rows)."""
    return np.any(windows != 0, axis=(0, 2))


def fill_absent(powers: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Band powers with each absent channel's row replaced by the mean over present channels."""
    per_channel = powers.reshape(len(present), -1).copy()
    if present.any() and not present.all():
        per_channel[~present] = per_channel[present].mean(axis=0)
    return per_channel.reshape(-1).astype(np.float32)


def window_mean(net: nn.Module, items: Sequence[Item], device: str) -> torch.Tensor:
    """Run ``net`` on every window of every item in one batch, then average per item.

    Recordings have different window counts; one concatenated batch keeps the device busy
    and the per-item mean makes the embedding independent of the recording's length.
    """
    counts = torch.tensor([len(it["x"]) for it in items])
    x = torch.from_numpy(np.concatenate([np.asarray(it["x"], np.float32) for it in items]))
    z = net(to_device(x, device))
    owner = torch.repeat_interleave(torch.arange(len(items)), counts).to(z.device)
    pooled = torch.zeros(len(items), z.shape[1], device=z.device, dtype=z.dtype)
    pooled.index_add_(0, owner, z)
    return pooled / counts.to(z.device, z.dtype)[:, None]


def asymmetry(powers: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``|log P(left) - log P(right)|`` per homologous pair and band, from :func:`band_powers` output.

    With ``present`` (a channel mask), a pair missing either side gives 0: no evidence of asymmetry.
    """
    per_channel = powers.reshape(len(STANDARD_1020), -1)
    idx = {c: i for i, c in enumerate(STANDARD_1020)}
    have = np.ones(len(STANDARD_1020), bool) if present is None else present
    diff = [np.abs(per_channel[idx[left]] - per_channel[idx[right]]) * (have[idx[left]] and have[idx[right]])
            for left, right in HOMOLOGOUS_PAIRS]
    return np.stack(diff).reshape(-1).astype(np.float32)


class EEGEncoder(TorchEncoder):
    """TCN over windows (mean-pooled) + log band powers + asymmetries; ``dim`` = out_dim + 27 * n_bands."""

    name = "eeg-tcn-bands"
    modality = "eeg"
    revision = 3  # 2: hemispheric asymmetry features; 3: channel mask (absent rows filled / zeroed)

    def __init__(self, config: EEGConfig | None = None, *, seed: int = 0,
                 encoders_dir: Path | None = None, device: str = "cpu") -> None:
        cfg = config or EEGConfig()
        self.extra_dim = (len(STANDARD_1020) + len(HOMOLOGOUS_PAIRS)) * len(cfg.bands)
        super().__init__(cfg, seed=seed, encoders_dir=encoders_dir, device=device)

    @property
    def net_dim(self) -> int:
        return self.config.out_dim

    def build_network(self) -> nn.Module:
        c = self.config
        return TemporalConvNet(len(STANDARD_1020), c.channels, c.kernel_size, c.out_dim)

    def prepare(self, array: np.ndarray) -> Item:
        data = np.nan_to_num(np.asarray(array, np.float32))
        if data.ndim != 3 or data.shape[1] != len(STANDARD_1020) or data.shape[0] == 0:
            raise ValueError(f"EEG array must be (n_windows>0, {len(STANDARD_1020)}, samples), "
                             f"got shape {data.shape}")
        pick = np.unique(np.linspace(0, data.shape[0] - 1, self.config.max_windows).round().astype(int))
        windows = data[pick]
        present = channel_mask(data)  # all False (never from the reader) leaves the -6 floor
        powers = fill_absent(band_powers(data, self.config.sfreq, self.config.bands), present)
        return {"x": windows / self.config.scale_uv,
                "extra": np.concatenate([powers, asymmetry(powers, present)])}

    def forward(self, items: Sequence[Item]) -> torch.Tensor:
        return window_mean(self.net, items, self.device)

    def augmentation(self) -> Callable[[Item], Item]:
        return Compose([
            RandGaussianNoised(keys="x", prob=0.5, std=0.05),
            RandScaleIntensityd(keys="x", factors=0.1, prob=0.5),
            RandTimeShiftd(keys="x", max_shift=int(self.config.sfreq), prob=0.5),
        ])
