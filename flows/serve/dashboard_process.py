"""The Streamlit command line that serves the dashboard, shared by `clinfuse dashboard` and `clinfuse serve`.

One definition, so the dashboard runs headless, bound where asked and without usage statistics
whichever command starts it.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def streamlit_command(host: str, port: int, app: Path = APP) -> list[str]:
    """The `streamlit run` command line: headless, no usage statistics, on ``host:port``."""
    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
