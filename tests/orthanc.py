"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the DICOMweb tests and benchmark, run as a
plain process.

Started from a temporary JSON config on free loopback ports (the package's own service, where one runs, holds
8042/4242), with HTTP basic auth on and HTTP compression off; stopped by pid.  Uploads go through STOW-RS with
``dicomweb-client`` (an independent client, so the tests do not check the project's code with itself).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def missing() -> str | None:
    """Why an Orthanc cannot be started here (None when it can)."""
    if not os.path.exists(ORTHANC):
        return f"{ORTHANC} is missing (apt-get install orthanc orthanc-dicomweb)"
    if not os.path.exists(DICOMWEB_PLUGIN):
        return f"{DICOMWEB_PLUGIN} is missing (apt-get install orthanc-dicomweb)"
    return None


@dataclass
class Orthanc:
    workdir: Path
    http_port: int
    dicom_port: int
    user: str
    password: str
    limit_find_instances: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicom-web"

    def config(self) -> dict:
        storage = str(self.workdir / "db")
        return {
            "Name": "scanlabel-tests",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            # Compressing already-compressed pixels made a 10 MB retrieve take 485 ms instead of 37 ms.
            "HttpCompressionEnabled": False,
            "LimitFindInstances": self.limit_find_instances,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }

    def start(self, timeout_s: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config()))
        log = open(self.workdir / "orthanc.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=log, cwd=self.workdir)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; see {self.workdir / 'orthanc.log'}")
            try:
                if requests.get(f"{self.root}/system", auth=(self.user, self.password), timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not answer in time")

    def stop(self) -> None:
        """SIGTERM by pid and wait: a restart on the same port fails while the old process still holds it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def store(self, paths: list[Path]) -> list[str]:
        """STOW-RS each file; returns the SOP Instance UIDs stored."""
        import pydicom
        from dicomweb_client import DICOMwebClient

        session = requests.Session()
        session.auth = (self.user, self.password)
        client = DICOMwebClient(self.dicomweb, session=session)
        uids = []
        for p in paths:
            ds = pydicom.dcmread(p)
            client.store_instances([ds])
            uids.append(str(ds.SOPInstanceUID))
        return uids

    def store_datasets(self, datasets: list) -> None:
        from dicomweb_client import DICOMwebClient

        session = requests.Session()
        session.auth = (self.user, self.password)
        DICOMwebClient(self.dicomweb, session=session).store_instances(datasets)
