"""A throwaway Orthanc (DICOMweb plugin, optional DICOM port) on loopback for tests that need a real PACS.

Started with a fresh storage folder, on free ports, in its own process group,
and stopped (SIGTERM, then SIGKILL) when the context ends. Tests skip with a
reason when the Debian packages ``orthanc``/``orthanc-dicomweb`` are absent.
HTTP answers loopback only (``RemoteAccessAllowed: false``); Orthanc 1.10 has no
bind-address option for its DICOM port, so when ``dicom`` is asked for that
port listens on every interface for the minute of the test module (a free port;
only the AE titles the test names in ``known_aets`` may C-FIND and C-GET).

Sharing: the DICOMweb-only server is one per test session (``orthanc_session`` in
tests/conftest.py) and the DICOM one one per module; each test gets it emptied
through the REST API (:meth:`Orthanc.clear`), as a fresh server would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its HTTP base, DICOMweb root, DICOM port and AE title."""

    base: str
    dicom_port: int
    aet: str = "ORTHANC"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def upload(self, path: Path) -> None:
        """``POST /instances``: store one DICOM file."""
        request = urllib.request.Request(f"{self.base}/instances", data=Path(path).read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
        urllib.request.urlopen(request, timeout=30).close()

    def instance_count(self) -> int:
        """How many instances the server stores (``GET /statistics``)."""
        with urllib.request.urlopen(f"{self.base}/statistics", timeout=30) as resp:
            return int(json.load(resp)["CountInstances"])

    def clear(self) -> None:
        """Delete every patient, and with them every study, series and instance (``DELETE /patients/{id}``).

        Why: a server shared by several tests must start each one as empty as a fresh one
        would; the REST delete takes milliseconds where a fresh server takes seconds.
        """
        with urllib.request.urlopen(f"{self.base}/patients", timeout=30) as resp:
            patients = json.load(resp)
        for pid in patients:
            request = urllib.request.Request(f"{self.base}/patients/{pid}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()
        left = self.instance_count()
        assert left == 0, f"Orthanc still stores {left} instance(s) after deleting every patient"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)),
                                           None)


def dicomweb_plugin() -> str | None:
    try:
        files = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        files = ""
    return next((line for line in files.splitlines() if line.endswith("libOrthancDicomWeb.so")), None)


@contextmanager
def run_orthanc(root: Path, dicom: bool = False, known_aets: tuple[str, ...] = ()) -> Iterator[Orthanc]:
    """An empty Orthanc under ``root``; with ``dicom`` its DICOM port answers (C-FIND/C-GET for ``known_aets``)."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None or plugin is None:
        pytest.skip("Orthanc or its DICOMweb plugin is not installed (scripts/ensure-system-packages.sh installs "
                    "the Debian packages orthanc and orthanc-dicomweb)")
    root.mkdir(parents=True, exist_ok=True)
    port, dicom_port = free_port(), free_port()
    config = {"Name": "clinfuse-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
              "HttpPort": port,
              "DicomServerEnabled": dicom, "DicomPort": dicom_port, "DicomAet": "ORTHANC",
              "DicomCheckCalledAet": False, "DicomAlwaysAllowGet": False, "DicomAlwaysAllowFind": False,
              "DicomModalities": {aet.lower(): [aet, "127.0.0.1", free_port()] for aet in known_aets},
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [plugin],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/system", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail("Orthanc did not answer within 30 s")
        yield Orthanc(base, dicom_port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
