"""CT volume encoder: HU windows as channels, a small MONAI 3D ResNet, plus a fixed radiomics block.

Input is the normalised CT array (float32 ``(D, H, W)`` in HU, see CONTRACTS.md).
Two clinical windows (brain and soft tissue) become two channels via MONAI's
``ScaleIntensityRange``, so a bleed (hyperdense in the brain window) is not lost in
the full HU range. The volume is area-downsampled before the network so CPU
encoding and pretraining stay fast. After the network embedding come the fixed
features of :func:`models.encoders.image_features.ct_features` (IBSI first-order
statistics of the body and its soft tissue, soft-tissue GLCM texture), computed
on the full-resolution array within the body mask the volume itself defines:
they do not depend on where the head sits in the array nor on which side a
finding is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from monai.networks.nets import ResNet
from monai.transforms import Compose, RandAffined, RandGaussianNoised, Resize, ScaleIntensityRange
from torch import nn

from models.encoders.base import Item, TorchEncoder
from models.encoders.image_features import CT_FEATURE_NAMES, ct_features


@dataclass(frozen=True)
class CTConfig:
    """Preprocessing and network shape; all of it enters the encoder version."""

    windows: tuple[tuple[float, float], ...] = ((0.0, 80.0), (-160.0, 240.0))  # brain, soft tissue (HU)
    input_shape: tuple[int, int, int] = (16, 32, 32)
    channels: tuple[int, ...] = (8, 16, 32, 64)
    out_dim: int = 64


class CTEncoder(TorchEncoder):
    """3D ResNet on windowed HU volumes + the CT feature block; ``dim`` = ``out_dim + len(CT_FEATURE_NAMES)``."""

    name = "ct-resnet3d"
    modality = "ct"
    extra_dim = len(CT_FEATURE_NAMES)
    revision = 3  # 2: hand-crafted lesion/hemisphere block; 3: IBSI radiomics on the body mask instead

    def __init__(self, config: CTConfig | None = None, *, seed: int = 0,
                 encoders_dir: Path | None = None, device: str = "cpu") -> None:
        cfg = config or CTConfig()
        self._windows = [ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
                         for lo, hi in cfg.windows]
        self._resize = Resize(spatial_size=cfg.input_shape, mode="area")
        super().__init__(cfg, seed=seed, encoders_dir=encoders_dir, device=device)

    @property
    def net_dim(self) -> int:
        return self.config.out_dim

    def build_network(self) -> nn.Module:
        return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=list(self.config.channels),
                      spatial_dims=3, n_input_channels=len(self.config.windows),
                      num_classes=self.config.out_dim, conv1_t_size=3, conv1_t_stride=1)

    def prepare(self, array: np.ndarray) -> Item:
        vol = np.nan_to_num(np.asarray(array, np.float32), nan=-1024.0)
        if vol.ndim != 3:
            raise ValueError(f"CT array must be (D, H, W), got shape {vol.shape}")
        chans = np.stack([np.asarray(w(vol)) for w in self._windows])
        return {"x": np.asarray(self._resize(chans), np.float32), "extra": ct_features(vol)}

    def augmentation(self) -> Callable[[Item], Item]:
        """Noise and small rotations/shifts; never a left-right flip (lesion side is signal)."""
        return Compose([
            RandGaussianNoised(keys="x", prob=0.5, std=0.03),
            RandAffined(keys="x", prob=0.5, rotate_range=(0.1, 0.05, 0.05), translate_range=(1, 2, 2),
                        scale_range=(0.05, 0.05, 0.05), padding_mode="zeros"),
        ])
