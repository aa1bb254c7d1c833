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

REMOTE_SCHEMES = ("s3", "gs", "gcs")


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
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)
