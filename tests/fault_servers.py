"""Real servers a fault test can stop and start again on the same port and storage (a restart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port
from tests.orthanc_server import dicomweb_plugin, orthanc_binary


def orthanc_problem() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if orthanc_binary() is None or dicomweb_plugin() is None:
        return ("Orthanc or its DICOMweb plugin is not installed (scripts/ensure-system-packages.sh installs the "
                "Debian packages orthanc and orthanc-dicomweb)")
    return None


class Orthanc:
    """One Orthanc (DICOMweb at /dicom-web/) on a fixed loopback port and storage folder; stop() then start()
    is a restart that keeps every stored instance."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = Path(root), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        config = {"Name": "clinfuse-faults", "StorageDirectory": str(self.root / "db"),
                  "IndexDirectory": str(self.root / "db"), "HttpPort": self.port, "DicomServerEnabled": False,
                  "DicomPort": free_port(), "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "Plugins": [dicomweb_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "orthanc.json").write_text(json.dumps(config))

    def start(self, wait_s: float = 60.0) -> None:
        log = open(self.root / "orthanc.log", "ab")
        self.proc = subprocess.Popen([orthanc_binary(), str(self.root / "orthanc.json")], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.base + "/system", timeout=2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("Orthanc exited: " + (self.root / "orthanc.log").read_text()[-2000:])
                time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer within {wait_s} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None

    def upload(self, files: list[Path]) -> None:
        """``POST /instances`` for each file, stored as-is."""
        for path in files:
            request = urllib.request.Request(self.base + "/instances", data=path.read_bytes(), method="POST",
                                             headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(request, timeout=60) as resp:
                assert json.load(resp)["Status"] in ("Success", "AlreadyStored")
