"""The X-ray resize gives MONAI Resize's arrays bit for bit, without importing MONAI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ingestion.readers.xray_image import _resize


@pytest.mark.parametrize(("shape", "target"), [((1760, 1760), (256, 256)), ((300, 417), (224, 224)),
                                               ((50, 60), (224, 224)), ((225, 223), (224, 224)),
                                               ((40, 400), (64, 64)), ((48, 64), (32, 32))])
def test_resize_equals_monai_resize(shape: tuple[int, int], target: tuple[int, int]) -> None:
    from monai.transforms import Resize

    image = np.random.default_rng(sum(shape)).random(shape).astype(np.float32)
    mode = "area" if all(t <= s for t, s in zip(target, shape)) else "bilinear"
    want = np.asarray(Resize(spatial_size=target, mode=mode)(torch.from_numpy(image)[None])[0], dtype=np.float32)
    got = _resize(image, target)
    assert got.dtype == np.float32 and got.shape == target
    np.testing.assert_array_equal(got, want)


def test_reading_an_x_ray_file_imports_no_monai(tmp_path) -> None:
    from PIL import Image

    Image.fromarray(np.arange(4800, dtype=np.uint32).reshape(60, 80).astype(np.uint8), mode="L").save(
        tmp_path / "film.png")
    code = ("import sys; from ingestion.readers.image_file import read_image_file; "
            f"read_image_file({str(tmp_path / 'film.png')!r}, (32, 32), 'P1'); print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
