"""X-ray viewer: the normalised image with contrast (intensity range and gamma) control."""

from __future__ import annotations

import numpy as np
import streamlit as st


def adjust_contrast(image: np.ndarray, low: float, high: float, gamma: float = 1.0) -> np.ndarray:
    """Stretch ``[low, high]`` of a [0, 1] image to full range, apply ``gamma``, return 8-bit grey."""
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"contrast range must satisfy 0 <= low < high <= 1, got ({low}, {high})")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    scaled = np.clip((np.asarray(image, dtype=np.float32) - low) / (high - low), 0.0, 1.0) ** gamma
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def render_xray(image: np.ndarray, meta: dict, key: str = "xray") -> None:
    """Draw contrast controls and the adjusted (H, W) image."""
    if image.ndim != 2:
        st.error(f"X-ray array has shape {image.shape}; expected (H, W). Re-run ingestion for this item.")
        return
    left, right = st.columns([1, 2])
    with left:
        low, high = st.slider("X-ray intensity range", 0.0, 1.0, (0.0, 1.0), step=0.01, key=f"{key}_range",
                              help="Values below the range show black, above it white: narrows to raise contrast.")
        gamma = st.slider("Gamma", 0.3, 3.0, 1.0, step=0.1, key=f"{key}_gamma",
                          help="Below 1 brightens dark regions, above 1 darkens them.")
        if meta.get("view"):
            st.caption(f"View: {meta['view']}")
    with right:
        if high - low < 0.01:
            st.warning("The intensity range is empty; widen it.")
            return
        st.image(adjust_contrast(np.asarray(image), low, high, gamma), caption="X-ray", width=420, clamp=True)
