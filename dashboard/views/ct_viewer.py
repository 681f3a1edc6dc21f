"""CT volume viewer: axial slice slider with window/level presets and a custom window."""

from __future__ import annotations

import numpy as np
import streamlit as st

#: Radiology window presets as (level, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to 8-bit grey: ``level ± width/2`` spans black to white, values outside clip."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - lo) / width
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_ct(volume: np.ndarray, meta: dict, key: str = "ct") -> None:
    """Draw the slice slider, window controls and the windowed axial slice of a (D, H, W) HU volume."""
    if volume.ndim != 3 or volume.shape[0] == 0:
        st.error(f"CT array has shape {volume.shape}; expected a (D, H, W) volume. Re-run ingestion for this item.")
        return
    depth = int(volume.shape[0])
    left, right = st.columns([1, 2])
    with left:
        index = st.slider("CT slice", 1, depth, depth // 2 + 1, key=f"{key}_slice",
                          help="Axial slice, 1 = most inferior after resampling.") - 1
        preset = st.radio("Window", [*WINDOW_PRESETS, "custom"], horizontal=True, key=f"{key}_preset",
                          help="Lung, soft tissue, bone and brain presets, or set level and width yourself.")
        if preset == "custom":
            level = st.slider("Level (HU)", -1200, 2000, 40, key=f"{key}_level")
            width = st.slider("Width (HU)", 1, 4000, 400, key=f"{key}_width")
        else:
            level, width = WINDOW_PRESETS[preset]
        spacing = meta.get("spacing") or meta.get("spacing_mm")
        st.caption(f"Slice {index + 1}/{depth} · window L {level:g} / W {width:g} HU"
                   + (f" · spacing {spacing} mm" if spacing else ""))
    with right:
        image = apply_window(np.asarray(volume[index]), float(level), float(width))
        st.image(image, caption=f"CT axial slice {index + 1}", width=420, clamp=True)
