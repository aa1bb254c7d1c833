"""The DICOMweb transport against servers that misbehave the ways real ones do, without Orthanc.

A small real HTTP(S) server on loopback (the standard library's) plays a PACS that ignores ``limit`` or
``offset``, answers 503 for a while or for good, or holds a certificate nobody trusts; the code under test talks
to it over real sockets with its real session, retries and TLS checks.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from core import errors
from core.io import dicomweb
from core.io.dicomweb_listing import STUDY_UID, _paged

STUDIES = [{STUDY_UID: {"vr": "UI", "Value": [f"1.2.3.{i}"]}} for i in range(5)]
DICOM_BYTES = b"\0" * 128 + b"DICM" + b"payload"


class _Pacs(BaseHTTPRequestHandler):
    mode = "ok"
    failures_left = 0
    requests: list[str] = []
    authorization: list[str | None] = []

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        cls = type(self)
        cls.requests.append(self.path)
        cls.authorization.append(self.headers.get("Authorization"))
        if cls.mode == "down" or cls.failures_left > 0:
            cls.failures_left -= 1
            return self._send(503, b"", "text/plain")
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.endswith("/studies"):
            limit, offset = int(q.get("limit", 1000)), int(q.get("offset", 0))
            items = {
                "ignore_limit": STUDIES,
                "ignore_offset": STUDIES[:limit],
            }.get(cls.mode, STUDIES[offset : offset + limit])
            return self._send(200, json.dumps(items).encode(), "application/dicom+json")
        body = b'--XYZ\r\nContent-Type: application/dicom\r\n\r\n' + DICOM_BYTES + b"\r\n--XYZ--\r\n"
        self._send(200, body, 'multipart/related; type="application/dicom"; boundary=XYZ')


@pytest.fixture
def pacs():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pacs)
    _Pacs.mode, _Pacs.failures_left, _Pacs.requests, _Pacs.authorization = "ok", 0, [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _base(server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}/dicom-web"


FAST = dicomweb.HttpOptions(backoff_s=0.01, retries=2)


@pytest.mark.parametrize("mode, expected", [("ok", 5), ("ignore_limit", 5), ("ignore_offset", 2)])
def test_paging_ends_whatever_the_server_does_with_limit_and_offset(pacs, mode, expected):
    _Pacs.mode = mode
    got = _paged(f"{_base(pacs)}/studies", {}, FAST, STUDY_UID, page_size=2)
    assert len(got) == expected  # ignore_offset: the repeated page is noticed, not requested forever
    assert len(_Pacs.requests) <= 4


def test_a_5xx_is_retried_with_back_off_then_succeeds(pacs):
    _Pacs.failures_left = 2
    uri = f"dicomweb+{_base(pacs)}/studies/1.2/series/1.2.3/instances/1.2.3.4"
    assert dicomweb.fetch_instance(uri, 1 << 20, FAST) == DICOM_BYTES
    assert len(_Pacs.requests) == 3
    assert all("/instances/1.2.3.4" in p for p in _Pacs.requests)


def test_a_server_that_keeps_failing_is_server_unavailable_then_fails_fast(pacs):
    _Pacs.mode = "down"
    options = dicomweb.HttpOptions(backoff_s=0.01, retries=2, breaker_scope="keeps-failing")
    uri = f"dicomweb+{_base(pacs)}/studies/1.2/series/1.2.3/instances/1.2.3.4"
    for _ in range(dicomweb.BREAKER_FAILURES):
        with pytest.raises(errors.ScanError) as e:
            dicomweb.fetch_instance(uri, 1 << 20, options)
        assert e.value.code == errors.SERVER_UNAVAILABLE
    asked = len(_Pacs.requests)
    assert asked == dicomweb.BREAKER_FAILURES * 3  # each: the request and two retries
    with pytest.raises(errors.ScanError) as e:
        dicomweb.fetch_instance(uri, 1 << 20, options)
    assert e.value.code == errors.SERVER_UNAVAILABLE and len(_Pacs.requests) == asked  # not asked again


def test_tls_is_verified_unless_a_ca_bundle_trusts_the_server(pacs, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing: no certificate to test with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    pacs.socket = context.wrap_socket(pacs.socket, server_side=True)
    with pytest.raises(dicomweb.DicomwebError, match="refused the first request"):
        dicomweb.check_access(_base(pacs, "https"), dicomweb.HttpOptions(retries=0))
    assert _Pacs.requests == []  # the handshake failed: nothing, credentials included, was sent
    dicomweb.check_access(_base(pacs, "https"), dicomweb.HttpOptions(retries=0, ca_bundle=str(cert)))
    assert len(_Pacs.requests) == 1


def test_bearer_and_basic_credentials_come_from_the_environment(pacs, tmp_path, monkeypatch):
    uri = f"dicomweb+{_base(pacs)}/studies/1.2/series/1.2.3/instances/1.2.3.4"
    for var in (dicomweb.ENV_USER, dicomweb.ENV_PASSWORD, dicomweb.ENV_TOKEN, dicomweb.ENV_CREDENTIALS_FILE):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(dicomweb.ENV_TOKEN, "tok-123")
    dicomweb.fetch_instance(uri, 1 << 20, FAST)
    secret = tmp_path / "pacs.json"
    secret.write_text('{"username": "svc", "password": "pw"}')
    monkeypatch.setenv(dicomweb.ENV_CREDENTIALS_FILE, str(secret))  # a file wins over the variables
    dicomweb.fetch_instance(uri, 1 << 20, FAST)
    assert _Pacs.authorization == ["Bearer tok-123", "Basic c3ZjOnB3"]  # base64("svc:pw")
