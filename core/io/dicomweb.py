"""DICOMweb transport: one HTTP session per server and process, credentials, TLS, retries, WADO-RS retrieval.

A ``dicomweb+http(s)://host[:port]/prefix/studies/S/series/R/instances/I`` URI names one instance on a
DICOMweb server (the prefix is the server's DICOMweb root, e.g. ``/dicom-web``).  :func:`fetch_instance`
retrieves it with WADO-RS asking for ``application/dicom; transfer-syntax=*`` - the instance as stored, so the
server transcodes nothing (Orthanc would otherwise decompress to Explicit VR Little Endian, or fail with HTTP
500 on JPEG 2000 without GDCM) and the project's own readers, reduced-resolution paths included, do the work.
The multipart/related body is split by ``requests_toolbelt`` (see docs/dicomweb.md, "Transport").

Credentials come only from the environment or a file named by the environment (:func:`credentials_from_env`),
never from a command line; they live on the session object and never appear in a message, a row or a log.
TLS certificates are verified unless a deployment says otherwise; ``ca_bundle`` points at a private CA.

Failures map onto the row error codes of files: 404 is ``not_found``, 401/403 ``permission_denied``, a
timeout ``timeout``, and a server that still answers 429/5xx (or refuses connections) after the retries with
back-off is ``server_unavailable``.  Once a server has failed that way several times in a row, further
requests to it fail at once for a cool-down period instead of each waiting out its own retries: a PACS that
went down mid-run turns the rest of the run into fast, retryable error rows.

No Ray here; plain HTTP with ``requests``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import requests
from requests.adapters import HTTPAdapter
from requests_toolbelt.multipart.decoder import MultipartDecoder
from urllib3.util.retry import Retry

from core import errors

T = TypeVar("T")

SCHEME_PREFIX = "dicomweb+"
ENV_USER = "SCANLABEL_DICOMWEB_USER"
ENV_PASSWORD = "SCANLABEL_DICOMWEB_PASSWORD"
ENV_TOKEN = "SCANLABEL_DICOMWEB_TOKEN"
ENV_CREDENTIALS_FILE = "SCANLABEL_DICOMWEB_CREDENTIALS_FILE"
ENV_CA_BUNDLE = "SCANLABEL_DICOMWEB_CA_BUNDLE"

# WADO-RS "as stored": no server-side transcoding (PS3.18 8.7.3.5.2, transfer-syntax=*).
ACCEPT_INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_JSON = "application/dicom+json, application/json"
RETRY_STATUSES = (429, 500, 502, 503, 504)

_UID = r"[0-9]+(?:\.[0-9]+)*"
_INSTANCE_PATH = re.compile(
    rf"^(?P<prefix>.*?)/studies/(?P<study>{_UID})/series/(?P<series>{_UID})/instances/(?P<sop>{_UID})/?$"
)


class DicomwebError(ValueError):
    """A server-level failure (bad credentials, unreachable, not DICOMweb) that stops a command before any work
    (a ValueError: the CLI exits 2, "fix the input", as for a bad manifest)."""


@dataclass(frozen=True)
class Credentials:
    """HTTP basic or bearer credentials; ``repr`` never shows the secret."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        kind = "bearer" if self.token else "basic" if self.username else "none"
        return f"Credentials({kind})"

    def apply(self, session: requests.Session) -> None:
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        elif self.username is not None:
            session.auth = (self.username, self.password or "")


def credentials_from_env(environ: dict[str, str] | None = None) -> Credentials:
    """Credentials from ``SCANLABEL_DICOMWEB_TOKEN``, ``..._USER``/``..._PASSWORD`` or the JSON file named by
    ``SCANLABEL_DICOMWEB_CREDENTIALS_FILE`` (``{"token": ...}`` or ``{"username": ..., "password": ...}``).

    A file is what a cluster should use (a mounted secret: only its path travels in the job's environment);
    plain variables suit a laptop.  Nothing set means anonymous access."""
    env = os.environ if environ is None else environ
    path = env.get(ENV_CREDENTIALS_FILE)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise DicomwebError(f"{ENV_CREDENTIALS_FILE}: not a readable JSON file ({type(e).__name__})") from e
        if not isinstance(data, dict) or not (data.get("token") or data.get("username")):
            raise DicomwebError(f"{ENV_CREDENTIALS_FILE}: expected {{'token'}} or {{'username', 'password'}} keys")
        return Credentials(data.get("username"), data.get("password"), data.get("token"))
    if env.get(ENV_TOKEN):
        return Credentials(token=env[ENV_TOKEN])
    if env.get(ENV_USER):
        return Credentials(env[ENV_USER], env.get(ENV_PASSWORD, ""))
    return Credentials()


@dataclass(frozen=True)
class HttpOptions:
    """How requests are made: TLS trust, timeouts, retries, concurrency per worker."""

    ca_bundle: str | None = None  # a PEM file of trusted CAs; None = the system/certifi store
    verify_tls: bool = True
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4  # WADO-RS requests in flight per decode task
    # Failures are counted per server *and* scope: a labeling run sets its run id, so a server that was down
    # during one run does not fail the next run's first rows from a worker process Ray reuses.
    breaker_scope: str = ""

    def verify(self) -> bool | str:
        if not self.verify_tls:
            return False
        return self.ca_bundle or os.environ.get(ENV_CA_BUNDLE) or True


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance lives: the server's DICOMweb root and the three UIDs."""

    base: str  # http(s)://host[:port]/prefix  (no trailing slash)
    study: str
    series: str
    sop: str

    @property
    def url(self) -> str:
        return f"{self.base}/studies/{self.study}/series/{self.series}/instances/{self.sop}"

    @property
    def uri(self) -> str:
        return SCHEME_PREFIX + self.url


def is_dicomweb(uri: str) -> bool:
    return str(uri).startswith(SCHEME_PREFIX)


def check_base_url(url: str) -> str:
    """A DICOMweb root URL, normalised (no trailing slash); refuses credentials embedded in it."""
    url = str(url)
    if url.startswith(SCHEME_PREFIX):
        url = url[len(SCHEME_PREFIX):]
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an http(s) DICOMweb URL: {url!r}")
    if parsed.username or parsed.password:
        raise ValueError(f"credentials in the URL are not accepted; set {ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}")
    if parsed.query or parsed.fragment:
        raise ValueError("a DICOMweb root URL takes no query or fragment")
    return url.rstrip("/")


def parse_uri(uri: str) -> InstanceRef:
    """Split a ``dicomweb+...`` instance URI; a malformed one is ``not_found`` (no such instance can exist)."""
    uri = str(uri)
    if not is_dicomweb(uri):
        raise errors.ScanError(errors.NOT_FOUND, "not a dicomweb+http(s) URI")
    url = uri[len(SCHEME_PREFIX):]
    parsed = urlparse(url)
    match = _INSTANCE_PATH.match(parsed.path)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or match is None or parsed.query:
        raise errors.ScanError(errors.NOT_FOUND, "not a DICOMweb instance URI")
    if parsed.username or parsed.password:
        raise errors.ScanError(errors.PERMISSION_DENIED, "credentials in a URI are refused")
    base = f"{parsed.scheme}://{parsed.netloc}{match['prefix']}"
    return InstanceRef(base, match["study"], match["series"], match["sop"])


def server_key(uri: str) -> str:
    """``scheme://netloc`` of a URI or URL (the unit sessions and the circuit breaker are kept per)."""
    url = uri[len(SCHEME_PREFIX):] if is_dicomweb(uri) else uri
    p = urlparse(url)
    return f"{p.scheme}://{p.netloc}"


# --- sessions ------------------------------------------------------------------------------------------------

_sessions: dict[tuple, requests.Session] = {}
_sessions_lock = threading.Lock()


_CREDENTIAL_VARS = (ENV_USER, ENV_PASSWORD, ENV_TOKEN, ENV_CREDENTIALS_FILE, ENV_CA_BUNDLE)


def session_for(url: str, options: HttpOptions) -> requests.Session:
    """A pooled session for one server (cached per process: a TLS handshake per image would dominate).

    Keyed by the credential variables as they are now, so a changed environment gets a new session; the
    credentials themselves are read (file included) only when a session is made."""
    env_now = tuple(os.environ.get(v) for v in _CREDENTIAL_VARS)
    key = (server_key(url), replace(options, breaker_scope=""), env_now)  # one pool per server across runs
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            creds = credentials_from_env()
            session = requests.Session()
            retry = Retry(
                total=options.retries,
                connect=options.retries,
                read=options.retries,
                status=options.retries,
                backoff_factor=options.backoff_s,
                backoff_max=10.0,
                status_forcelist=RETRY_STATUSES,
                allowed_methods=frozenset({"GET", "HEAD"}),
                respect_retry_after_header=True,
                raise_on_status=False,  # the last 5xx comes back as a response, mapped below
            )
            adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(4, options.concurrency * 2))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.verify = options.verify()
            session.trust_env = False  # no ~/.netrc credentials sent to a server we were not told to trust
            creds.apply(session)
            _sessions[key] = session
    return session


# --- circuit breaker -----------------------------------------------------------------------------------------

BREAKER_FAILURES = 3  # consecutive server_unavailable results that open the breaker
BREAKER_COOLDOWN_S = 30.0


class _Breaker:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.open_until: dict[str, float] = {}

    def check(self, server: str) -> None:
        with self.lock:
            if self.open_until.get(server, 0.0) > time.monotonic():
                raise errors.ScanError(errors.SERVER_UNAVAILABLE, "server failing; not retried during cool-down")

    def record(self, server: str, ok: bool) -> None:
        with self.lock:
            if ok:
                self.failures.pop(server, None)
                self.open_until.pop(server, None)
                return
            n = self.failures.get(server, 0) + 1
            self.failures[server] = n
            if n >= BREAKER_FAILURES:
                self.open_until[server] = time.monotonic() + BREAKER_COOLDOWN_S


_breaker = _Breaker()


# --- requests ------------------------------------------------------------------------------------------------


def _status_error(status: int) -> errors.ScanError:
    if status == 404 or status == 410:
        return errors.ScanError(errors.NOT_FOUND, f"HTTP {status}")
    if status in (401, 403):
        return errors.ScanError(errors.PERMISSION_DENIED, f"HTTP {status}")
    if status == 406:
        return errors.ScanError(errors.UNSUPPORTED_FORMAT, "HTTP 406: server cannot send the stored transfer syntax")
    if status == 413:
        return errors.ScanError(errors.TOO_LARGE, "HTTP 413")
    if status in RETRY_STATUSES:
        return errors.ScanError(errors.SERVER_UNAVAILABLE, f"HTTP {status} after retries")
    return errors.ScanError(errors.IO_ERROR, f"HTTP {status}")


def _get(session: requests.Session, url: str, options: HttpOptions, **kwargs) -> requests.Response:
    """GET with the breaker and the error mapping; the caller closes the (streamed) response."""
    server = f"{server_key(url)}#{options.breaker_scope}"
    _breaker.check(server)
    try:
        response = session.get(url, timeout=(options.connect_timeout_s, options.read_timeout_s), **kwargs)
    except requests.exceptions.ConnectTimeout as e:
        _breaker.record(server, ok=False)
        raise errors.ScanError(errors.SERVER_UNAVAILABLE, "connect timeout after retries") from e
    except requests.exceptions.Timeout as e:
        raise errors.ScanError(errors.TIMEOUT, type(e).__name__) from e
    except requests.exceptions.SSLError as e:
        raise errors.ScanError(errors.PERMISSION_DENIED, "TLS certificate not trusted") from e
    except (requests.exceptions.ConnectionError, requests.exceptions.RetryError) as e:
        _breaker.record(server, ok=False)
        raise errors.ScanError(errors.SERVER_UNAVAILABLE, type(e).__name__) from e
    if response.status_code in RETRY_STATUSES:
        _breaker.record(server, ok=False)
        response.close()
        raise _status_error(response.status_code)
    _breaker.record(server, ok=True)
    if response.status_code != 200:
        response.close()
        raise _status_error(response.status_code)
    return response


def _read_body(response: requests.Response, max_bytes: int) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:  # 64 KiB of multipart framing
        raise errors.ScanError(errors.TOO_LARGE, f"response of {length} bytes exceeds {max_bytes}")
    chunks, total = [], 0
    try:
        for chunk in response.iter_content(chunk_size=1 << 20):
            total += len(chunk)
            if total > max_bytes + 64 * 1024:
                raise errors.ScanError(errors.TOO_LARGE, f"response exceeds {max_bytes} bytes")
            chunks.append(chunk)
    except requests.exceptions.RequestException as e:
        raise errors.ScanError(errors.IO_ERROR, f"body interrupted ({type(e).__name__})") from e
    return b"".join(chunks)


def _single_part(body: bytes, content_type: str) -> bytes:
    """The DICOM instance out of a WADO-RS body (multipart/related, or a bare application/dicom some servers send)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/dicom":
        return body
    if media != "multipart/related":
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, f"unexpected media type {media[:40]!r}")
    try:
        parts = MultipartDecoder(body, content_type).parts
    except Exception as e:  # noqa: BLE001 - a malformed multipart body is one bad row, whatever the parser raises
        raise errors.ScanError(errors.DECODE_ERROR, f"malformed multipart body ({type(e).__name__})") from e
    if len(parts) != 1:
        raise errors.ScanError(errors.DECODE_ERROR, f"expected one instance, got {len(parts)} parts")
    return parts[0].content


def fetch_instance(uri: str, max_bytes: int, options: HttpOptions | None = None) -> bytes:
    """The stored bytes of one instance (WADO-RS, no transcoding); failures are :class:`ScanError` codes."""
    options = options or HttpOptions()
    ref = parse_uri(uri)
    session = session_for(ref.base, options)
    response = _get(session, ref.url, options, headers={"Accept": ACCEPT_INSTANCE}, stream=True)
    with response:
        body = _read_body(response, max_bytes)
        data = _single_part(body, response.headers.get("Content-Type", ""))
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    if len(data) > max_bytes:
        raise errors.ScanError(errors.TOO_LARGE, f"instance exceeds {max_bytes} bytes")
    return data


def in_order(fn: Callable[[str], T], items: Sequence[str], window: int) -> Iterator[T]:
    """``fn`` over ``items``, results in order, at most ``window`` calls in flight (and as many results held).

    The decode loop takes one instance while the next ones download, without a whole batch of bodies in memory:
    a worker's requests to the server stay bounded by ``window`` (``--dicomweb-concurrency``)."""
    window = max(1, int(window))
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="wado") as pool:
        pending: deque[Future[T]] = deque(pool.submit(fn, x) for x in items[:window])
        for nxt in range(window, len(items) + window):
            result = pending.popleft().result()
            if nxt < len(items):
                pending.append(pool.submit(fn, items[nxt]))
            yield result


def get_json(url: str, options: HttpOptions, params: dict | None = None, *, accept: str = ACCEPT_JSON) -> object:
    """A JSON GET (QIDO-RS or a server's REST API) with the transport's auth, TLS, retries and error mapping."""
    session = session_for(url, options)
    response = _get(session, url, options, params=params, headers={"Accept": accept})
    with response:
        if not response.content:
            return []
        try:
            return response.json()
        except ValueError as e:
            raise errors.ScanError(errors.DECODE_ERROR, "response is not JSON") from e


# --- before any work -----------------------------------------------------------------------------------------


def servers_in(uris: pa.Array | pa.ChunkedArray) -> list[str]:
    """The distinct DICOMweb roots (``http(s)://host/prefix``) a manifest's ``uri`` column points at."""
    mask = pc.starts_with(uris, SCHEME_PREFIX)
    remote = pc.filter(uris, mask)
    if len(remote) == 0:
        return []
    roots = pc.replace_substring_regex(remote, r"/studies/[^/]*/series/[^/]*/instances/[^/]*/?$", "")
    return sorted(r[len(SCHEME_PREFIX):] for r in pc.unique(roots).to_pylist())


def check_access(base: str, options: HttpOptions) -> None:
    """One authenticated QIDO-RS request, so wrong credentials or an unreachable server stop a command before it
    lists, plans or labels anything (a labeling run would otherwise write one error row per instance)."""
    base = check_base_url(base)
    try:
        get_json(f"{base}/studies", options, {"limit": 1, "includefield": "0020000D"})
    except errors.ScanError as e:
        hint = {
            errors.PERMISSION_DENIED: f"check {ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN} or {ENV_CREDENTIALS_FILE}"
            " (and --ca-bundle for a private CA)",
            errors.NOT_FOUND: "is this the server's DICOMweb root (e.g. .../dicom-web)?",
            errors.SERVER_UNAVAILABLE: "the server did not answer through the retries",
        }.get(e.code, "")
        raise DicomwebError(f"DICOMweb server {base} refused the first request ({e}); {hint}".rstrip("; ")) from e


def preflight(uris: pa.Array | pa.ChunkedArray, options: HttpOptions) -> list[str]:
    """:func:`check_access` for every server a manifest names; returns them."""
    servers = servers_in(uris)
    for base in servers:
        check_access(base, options)
    return servers
