"""Which files a labeling run may read: the ``--allowed-root`` boundary.

A manifest is data, often produced by another team or a PACS export script, and a job running with a service
account can read far more than the archive it was pointed at.  With allowed roots configured, a manifest row
can only make scanlabel read files under one of them - a ``../../etc/shadow`` row, or a symlink planted inside
the archive that points at another patient cohort, becomes an ``outside_allowed_root`` error row instead.

* Local paths (plain or ``file://``) are compared after :func:`os.path.realpath`: ``..`` and every symlink
  are resolved, as the kernel would resolve them.  After opening, :func:`verify_open_file` re-checks the path
  of the opened descriptor (``/proc/self/fd``) so that a symlink swapped in between check and open is caught
  too.  Hard links cannot be told apart from the original file; keep roots on file systems where untrusted
  users cannot create them.
* ``s3://`` / ``gs://`` URIs must have the same scheme, bucket (and credentials/endpoint query, if any) as a
  root, and a key under the root's prefix segment by segment.  Object stores treat ``..`` literally while
  some clients normalise it, so the key must be under the prefix both as written and with ``..``/``.``
  resolved; a ``..`` that climbs above the bucket is refused outright.
* ``dicomweb+http(s)://`` instance URIs are compared like object-store keys: same scheme and ``host:port`` as a
  root, path under the root's path segment by segment.  A root such as ``dicomweb+https://pacs/dicom-web`` is
  also what keeps a planted row from sending the job's DICOMweb credentials to another host.
* No roots configured means no restriction (the default, for backwards compatibility).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlparse

from core import errors
from core.io import storage

_REMOTE_ALIASES = {"gcs": "gs"}


def _is_url(uri: str) -> bool:
    """Object-store and DICOMweb URIs: compared by location and path segments, never resolved on disk."""
    return storage.is_remote(uri) or str(uri).startswith("dicomweb+")


def _resolve_segments(segments: list[str]) -> list[str] | None:
    """``..``/``.`` resolved; None when ``..`` climbs above the bucket."""
    out: list[str] = []
    for seg in segments:
        if seg == ".":
            continue
        if seg == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(seg)
    return out


def _remote_parts(uri: str) -> tuple[str, list[str]]:
    parsed = urlparse(uri)
    scheme = _REMOTE_ALIASES.get(parsed.scheme, parsed.scheme)
    location = f"{scheme}://{parsed.netloc}" + (f"?{parsed.query}" if parsed.query else "")
    return location, parsed.path.lstrip("/").split("/") if parsed.path.lstrip("/") else []


def _local_path(uri: str) -> str:
    _, path = storage.resolve(uri)
    return os.path.realpath(path)


@lru_cache(maxsize=256)
def _canonical_root(root: str) -> tuple[str, str | tuple[str, ...]]:
    """("local", realpath) or (location, key segments); cached: roots are configuration, not data."""
    if _is_url(root):
        location, segments = _remote_parts(root)
        while segments and segments[-1] == "":
            segments.pop()
        resolved = _resolve_segments(segments)
        if resolved is None:
            raise ValueError(f"allowed root {root!r} climbs above its bucket")
        return location, tuple(resolved)
    return "local", _local_path(root)


def _under_local(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def _under_remote(segments: Sequence[str], prefix: Sequence[str]) -> bool:
    return len(segments) >= len(prefix) and tuple(segments[: len(prefix)]) == tuple(prefix)


def validate_roots(allowed_roots: Sequence[str]) -> tuple[str, ...]:
    """Check ``--allowed-root`` values once, before any work: a typo must fail the job, not turn every row
    into a permanent ``outside_allowed_root`` error.  Local roots must be existing directories."""
    roots = tuple(str(r) for r in allowed_roots)
    for root in roots:
        if not root.strip():
            raise ValueError("an allowed root is empty")
        kind, resolved = _canonical_root(root)  # raises ValueError for a root climbing above its bucket
        if kind == "local" and not os.path.isdir(str(resolved)):
            raise ValueError(f"allowed root {root!r} is not an existing directory")
    return roots


def is_allowed(uri: str, allowed_roots: Sequence[str]) -> bool:
    """Whether ``uri`` lies under at least one of ``allowed_roots`` (always True when there are none)."""
    if not allowed_roots:
        return True
    roots = [_canonical_root(str(r)) for r in allowed_roots]
    uri = str(uri)
    if _is_url(uri):
        location, segments = _remote_parts(uri)
        resolved = _resolve_segments(segments)
        if resolved is None:
            return False
        return any(
            kind == location and _under_remote(segments, prefix) and _under_remote(resolved, prefix)
            for kind, prefix in roots
        )
    try:
        path = _local_path(uri)
    except (ValueError, OSError):  # NUL byte, unreadable cwd...: nothing we can vouch for
        return False
    return any(kind == "local" and _under_local(path, str(root)) for kind, root in roots)


def check_allowed(uri: str, allowed_roots: Sequence[str]) -> None:
    """Raise ``ScanError(outside_allowed_root)`` unless ``uri`` resolves under an allowed root.

    The message names neither the path nor where it resolved to: the row already carries the URI, and the
    symlink target may be exactly what must not leak.
    """
    if not is_allowed(uri, allowed_roots):
        raise errors.ScanError(errors.OUTSIDE_ALLOWED_ROOT, "resolves outside every allowed root")


def verify_open_file(fd: int, allowed_roots: Sequence[str]) -> None:
    """Re-check an opened local file by the path the kernel reports for its descriptor.

    Closes the window between :func:`check_allowed` and ``open`` in which a path component could be swapped
    for a symlink.  Where ``/proc`` is unavailable the pre-open check stands alone.
    """
    if not allowed_roots:
        return
    local_roots = [root for kind, root in (_canonical_root(str(r)) for r in allowed_roots) if kind == "local"]
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return
    if path.endswith(" (deleted)"):
        path = path[: -len(" (deleted)")]
    if not any(_under_local(path, str(root)) for root in local_roots):
        raise errors.ScanError(errors.OUTSIDE_ALLOWED_ROOT, "resolves outside every allowed root")
