"""A modality no patient has (a width-0 block, e.g. ECG at a site that records none) trains quietly."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import torch
from models.fusion import build_fusion
model = build_fusion("early", {"ct": 4, "ecg": 0})
print(sum(p.numel() for p in model.parameters()) > 0)
"""


def test_width_zero_block_builds_without_torch_warning() -> None:
    """`make demo` printed torch's "Initializing zero-element tensors is a no-op" once per layer."""
    out = subprocess.run([sys.executable, "-W", "default", "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "True"
    assert "zero-element" not in out.stderr, out.stderr
