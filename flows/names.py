"""Named constants shared by the flows, the CLI and the dashboard: spelled here once.

Held-out fraction and training epochs are model matters and live in ``models``
(:data:`models.held_out.HELD_OUT_FRACTION`, ``TrainConfig.epochs``).
"""

from __future__ import annotations

MODEL_NAME = "clinfuse"
"""The registered MLflow model every training run versions."""
CHAMPION = "champion"
"""Alias of the version that predictions use (moved by the champion gate)."""
CANDIDATE = "candidate"
"""Alias of a version that did not beat the champion."""
PREDICT_DEPLOYMENT = "predict/predict"
"""``<flow name>/<deployment name>`` of on-demand batch prediction on a Prefect server."""
DASHBOARD_PORT = 8501
"""Where ``clinfuse dashboard`` and ``clinfuse serve`` put Streamlit by default."""
