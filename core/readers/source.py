"""Bytes of one image from wherever the manifest says it lives (local disk, ``s3://``, ``gs://``, a DICOMweb server).

Reading (:func:`read_uri`)
    Bytes exactly as stored: no transparent ``.gz``/``.bz2`` decompression (a gzip bomb named ``x.dcm.gz``
    would otherwise expand in memory), local files must be regular files (a FIFO would block the worker,
    ``/dev/zero`` would never end), and a file over ``max_bytes`` is ``too_large``.  A ``dicomweb+http(s)://``
    instance is retrieved as stored with WADO-RS (:mod:`core.io.dicomweb`: auth, TLS, retries, error codes).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

import pyarrow.fs as pafs

from core import errors
from core.io import access, dicomweb, storage
from core.readers.base import DEFAULT_MAX_BYTES


def _read_local(path: str, max_bytes: int, allowed_roots: Sequence[str], head: bool = False) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except (FileNotFoundError, NotADirectoryError) as e:
        raise errors.ScanError(errors.NOT_FOUND, type(e).__name__) from e
    except PermissionError as e:
        raise errors.ScanError(errors.PERMISSION_DENIED, type(e).__name__) from e
    except ValueError as e:  # embedded NUL byte: no such file can exist
        raise errors.ScanError(errors.NOT_FOUND, "invalid path") from e
    except OSError as e:
        if e.errno in (40, 36):  # ELOOP, ENAMETOOLONG: the path cannot name a file
            raise errors.ScanError(errors.NOT_FOUND, "unresolvable path") from e
        raise errors.ScanError(errors.IO_ERROR, type(e).__name__) from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "not a regular file")
        if allowed_roots:
            access.verify_open_file(fd, allowed_roots)
        if st.st_size > max_bytes and not head:
            raise errors.ScanError(errors.TOO_LARGE, f"file of {st.st_size} bytes exceeds {max_bytes}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", closefd=True) as f:
        try:
            data = f.read(max_bytes if head else max_bytes + 1)
        except PermissionError as e:
            raise errors.ScanError(errors.PERMISSION_DENIED, type(e).__name__) from e
        except OSError as e:
            raise errors.ScanError(errors.IO_ERROR, type(e).__name__) from e
    if len(data) > max_bytes:  # grew while we read it
        raise errors.ScanError(errors.TOO_LARGE, f"file exceeds {max_bytes} bytes")
    return data


def _read_remote(uri: str, max_bytes: int, head: bool = False) -> bytes:
    try:
        fs, path = storage.resolve(uri)
        with fs.open_input_stream(path, compression=None) as f:
            data = f.read(max_bytes if head else max_bytes + 1)
    except FileNotFoundError as e:
        raise errors.ScanError(errors.NOT_FOUND, type(e).__name__) from e
    except PermissionError as e:
        raise errors.ScanError(errors.PERMISSION_DENIED, type(e).__name__) from e
    except IsADirectoryError as e:
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "is a directory") from e
    except OSError as e:
        text = str(e)
        low = text.lower()
        if "path does not exist" in low or "nosuchkey" in low or "not found" in low or "nosuchbucket" in low:
            raise errors.ScanError(errors.NOT_FOUND, "missing") from e
        if "permission denied" in low or "accessdenied" in low or "access_denied" in low or "forbidden" in low:
            raise errors.ScanError(errors.PERMISSION_DENIED, "access denied") from e
        if "is a directory" in low:
            raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "is a directory") from e
        if "timed out" in low or "timeout" in low:
            raise errors.ScanError(errors.TIMEOUT, type(e).__name__) from e
        raise errors.ScanError(errors.IO_ERROR, type(e).__name__) from e
    except ValueError as e:  # pyarrow.ArrowInvalid: a URI no object store can resolve
        raise errors.ScanError(errors.NOT_FOUND, "invalid URI") from e
    if len(data) > max_bytes:
        raise errors.ScanError(errors.TOO_LARGE, f"object exceeds {max_bytes} bytes")
    return data


def read_uri(
    uri: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed_roots: Sequence[str] = (),
    http: dicomweb.HttpOptions | None = None,
) -> bytes:
    """Read a whole file, translating OS, object-store and HTTP failures into row error codes.

    ``allowed_roots`` is only the post-open re-check (see :func:`core.io.access.verify_open_file`); callers do
    the path check with :func:`core.io.access.check_allowed` before calling this.  ``http`` (TLS trust,
    timeouts, retries) applies to ``dicomweb+`` URIs only.
    """
    uri = str(uri)
    if dicomweb.is_dicomweb(uri):
        data = dicomweb.fetch_instance(uri, max_bytes, http)
    elif storage.is_remote(uri):
        data = _read_remote(uri, max_bytes)
    else:
        try:
            fs, path = storage.resolve(uri)
        except ValueError as e:
            raise errors.ScanError(errors.NOT_FOUND, "invalid path") from e
        if not isinstance(fs, pafs.LocalFileSystem):  # pragma: no cover - resolve() only maps local here
            data = _read_remote(uri, max_bytes)
        else:
            data = _read_local(path, max_bytes, allowed_roots)
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    return data



def read_uri_head(uri: str, nbytes: int) -> bytes:
    """The first ``nbytes`` of a local file or object (fewer when it is shorter), with :func:`read_uri`'s error
    codes: what a header reader needs without fetching the pixel data behind it."""
    uri = str(uri)
    if dicomweb.is_dicomweb(uri):
        raise errors.ScanError(errors.UNSUPPORTED_FORMAT, "header-only reads are for files and object stores")
    if storage.is_remote(uri):
        data = _read_remote(uri, nbytes, head=True)
    else:
        try:
            _, path = storage.resolve(uri)
        except ValueError as e:
            raise errors.ScanError(errors.NOT_FOUND, "invalid path") from e
        data = _read_local(path, nbytes, (), head=True)
    if not data:
        raise errors.ScanError(errors.EMPTY_FILE)
    return data
