"""EEG viewer: stacked multichannel traces over a chosen time window, each channel scaled on its own."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ingestion.modalities import STANDARD_1020


def continuous(windows: np.ndarray) -> np.ndarray:
    """(n_windows, channels, samples) -> (channels, n_windows * samples), windows back to back."""
    if windows.ndim != 3:
        raise ValueError(f"EEG array has shape {windows.shape}; expected (n_windows, channels, samples)")
    return np.concatenate(list(windows), axis=1) if windows.shape[0] else windows.reshape(windows.shape[1], 0)


def stacked_traces(signal: np.ndarray, sfreq: float, channels: list[str], names: tuple[str, ...],
                   start_s: float, duration_s: float) -> go.Figure:
    """A plotly figure with one trace per channel, each scaled to unit robust amplitude and offset down.

    Per-channel scaling keeps a quiet channel readable next to a noisy one; the
    hover text gives the original microvolts.
    """
    a = max(0, int(start_s * sfreq))
    b = min(signal.shape[1], int((start_s + duration_s) * sfreq))
    t = np.arange(a, b) / sfreq
    fig = go.Figure()
    for row, name in enumerate(channels):
        x = signal[names.index(name), a:b].astype(np.float64)
        spread = float(np.percentile(np.abs(x - np.median(x)), 95)) if x.size else 0.0
        scaled = (x - np.median(x)) / spread * 0.4 if spread > 0 else np.zeros_like(x)
        fig.add_trace(go.Scattergl(x=t, y=scaled - row, mode="lines", name=name, line=dict(width=1),
                                   customdata=x, hovertemplate=f"{name} %{{customdata:.1f}} µV at %{{x:.2f}} s"))
    fig.update_layout(height=max(250, 28 * len(channels) + 80), margin=dict(l=10, r=10, t=10, b=30),
                      showlegend=False, xaxis_title="time (s)",
                      yaxis=dict(tickmode="array", tickvals=[-i for i in range(len(channels))], ticktext=channels,
                                 zeroline=False))
    return fig


def render_eeg(windows: np.ndarray, meta: dict, default_sfreq: float, key: str = "eeg") -> None:
    """Draw channel and time-window controls and the traces of an (n_windows, 19, samples) array."""
    try:
        signal = continuous(np.asarray(windows))
    except ValueError as exc:
        st.error(f"{exc}. Re-run ingestion for this item.")
        return
    names = tuple(meta.get("channels") or STANDARD_1020)
    if len(names) != signal.shape[0]:
        names = tuple(f"ch{i + 1}" for i in range(signal.shape[0]))
    sfreq = float(meta.get("sfreq") or default_sfreq)
    total_s = signal.shape[1] / sfreq
    missing = [c for c in meta.get("missing_channels", []) if c in names]
    left, right = st.columns([1, 3])
    with left:
        available = [c for c in names if c not in missing]
        chosen = st.multiselect("EEG channels", list(names), default=available[:10], key=f"{key}_channels",
                                help="Channels to draw; each is scaled to its own amplitude.")
        duration = st.slider("Window length (s)", 1.0, max(1.0, float(total_s)), min(10.0, float(total_s)),
                             step=1.0, key=f"{key}_duration")
        start = st.slider("Start (s)", 0.0, max(0.0, float(total_s - duration)), 0.0, step=0.5,
                          key=f"{key}_start")
        st.caption(f"{signal.shape[0]} channels · {sfreq:g} Hz · {total_s:.0f} s recorded")
        if missing:
            st.warning("Not recorded (zeros): " + ", ".join(missing))
    with right:
        if not chosen:
            st.info("Choose at least one channel.")
            return
        st.plotly_chart(stacked_traces(signal, sfreq, chosen, names, start, duration), key=f"{key}_plot")
