"""Paths and URIs through one door: local disk, ``s3://`` and ``gs://`` via pyarrow.fs.

Every read and write in scanlabel goes through here, so the same job runs against a laptop folder or an object
store.  S3 endpoints (MinIO, moto, on-prem gateways) come from the standard ``AWS_ENDPOINT_URL`` variable
or a ``?endpoint_override=`` query, both of which pyarrow understands.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from urllib.parse import urlparse

import pyarrow.fs as pafs

from core import killpoints

REMOTE_SCHEMES = ("s3", "gs", "gcs")

EXIT_CODE = 6  # a command exits with this when the object store kept failing (after the client's own retries)

# How the S3 clients word a failure that retrying later may cure: pyarrow's (the AWS SDK's error names, HTTP 5xx,
# curl's network errors) and botocore's (error codes, connection errors).  A 403 or a missing key is not here.
_UNAVAILABLE_MARKERS = (
    "SLOW_DOWN",
    "SlowDown",
    "HTTP status 5",
    "INTERNAL_FAILURE",
    "InternalError",
    "SERVICE_UNAVAILABLE",
    "ServiceUnavailable",
    "NETWORK_CONNECTION",
    "REQUEST_TIMEOUT",
    "curlCode",
    "Connection reset",
    "Connection refused",
    "Could not connect to the endpoint",
    "Connection was closed",
    "Read timeout",
    "reached max retries",
)


class StoreUnavailable(OSError):
    """The object store kept failing (throttling, 5xx, resets) after every retry: try again when it is back."""

    exit_code = EXIT_CODE


def is_unavailable(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from, is an object store that kept failing (not a bad path,
    a missing object or a refused credential): the run can be repeated as is once the store is back."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, StoreUnavailable):
            return True
        if isinstance(error, OSError | ConnectionError) or type(error).__module__.startswith("botocore"):
            text = str(error)
            if any(m in text for m in _UNAVAILABLE_MARKERS):
                return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def is_remote(uri: str) -> bool:
    return urlparse(str(uri)).scheme in REMOTE_SCHEMES


@lru_cache(maxsize=64)
def _filesystem_for(scheme: str, netloc: str, query: str) -> pafs.FileSystem:
    uri = f"{scheme}://{netloc}/" + (f"?{query}" if query else "")
    fs, _ = pafs.FileSystem.from_uri(uri)
    return fs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path inside it) for a local path, ``file://``, ``s3://`` or ``gs://`` URI.

    Filesystems are cached per bucket: building an S3 client per image would dominate the read time.
    """
    uri = str(uri)
    parsed = urlparse(uri)
    if parsed.scheme in REMOTE_SCHEMES:
        fs = _filesystem_for(parsed.scheme, parsed.netloc, parsed.query)
        return fs, f"{parsed.netloc}{parsed.path}"
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), parsed.path
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def file_size(uri: str) -> int:
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(uri)
    return int(info.size or 0)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write so that a reader sees either nothing or the whole file.

    Local: write a hidden temporary beside the target, fsync, then rename.  Object stores: a single PUT is
    already atomic (the object appears only once the upload completes).
    """
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        killpoints.reached("store.tmp_written")
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)
