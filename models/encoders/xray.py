"""X-ray image encoder: a small MONAI 2D ResNet on the normalised radiograph, plus a fixed radiomics block.

Input is float32 ``(H, W)`` in ``[0, 1]`` (bright = dense). Augmentations are
intensity noise and small affine jitter; horizontal flips are excluded because
laterality of an opacity is clinical signal for the network. After the network
embedding come the fixed features of
:func:`models.encoders.image_features.xray_features` (IBSI first-order statistics
of the body and the lung fields, lung-field GLCM texture, lung-field share), on
regions the radiograph itself defines: no centre line, no mirror comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from monai.networks.nets import ResNet
from monai.transforms import Compose, RandAffined, RandGaussianNoised, RandScaleIntensityd, Resize
from torch import nn

from models.encoders.base import Item, TorchEncoder
from models.encoders.image_features import XRAY_FEATURE_NAMES, xray_features


@dataclass(frozen=True)
class XrayConfig:
    """Preprocessing and network shape; all of it enters the encoder version."""

    input_shape: tuple[int, int] = (128, 128)
    channels: tuple[int, ...] = (8, 16, 32, 64)
    out_dim: int = 64


class XrayEncoder(TorchEncoder):
    """2D ResNet on the radiograph + the X-ray feature block; ``dim`` = ``out_dim + len(XRAY_FEATURE_NAMES)``."""

    name = "xray-resnet2d"
    modality = "xray"
    extra_dim = len(XRAY_FEATURE_NAMES)
    revision = 3  # 2: hand-crafted density/asymmetry block; 3: IBSI radiomics on body/lung masks instead

    def __init__(self, config: XrayConfig | None = None, *, seed: int = 0,
                 encoders_dir: Path | None = None, device: str = "cpu") -> None:
        cfg = config or XrayConfig()
        self._resize = Resize(spatial_size=cfg.input_shape, mode="area")
        super().__init__(cfg, seed=seed, encoders_dir=encoders_dir, device=device)

    @property
    def net_dim(self) -> int:
        return self.config.out_dim

    def build_network(self) -> nn.Module:
        return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=list(self.config.channels),
                      spatial_dims=2, n_input_channels=1, num_classes=self.config.out_dim,
                      conv1_t_size=5, conv1_t_stride=2)

    def prepare(self, array: np.ndarray) -> Item:
        img = np.clip(np.nan_to_num(np.asarray(array, np.float32)), 0.0, 1.0)
        if img.ndim != 2:
            raise ValueError(f"X-ray array must be (H, W), got shape {img.shape}")
        return {"x": np.asarray(self._resize(img[None]), np.float32), "extra": xray_features(img)}

    def augmentation(self) -> Callable[[Item], Item]:
        return Compose([
            RandGaussianNoised(keys="x", prob=0.5, std=0.02),
            RandScaleIntensityd(keys="x", factors=0.1, prob=0.5),
            RandAffined(keys="x", prob=0.5, rotate_range=0.08, translate_range=(4, 4),
                        scale_range=(0.05, 0.05), padding_mode="zeros"),
        ])
