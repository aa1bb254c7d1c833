"""Per-row error codes.

A bad image must become a row with a short, stable code rather than a crashed job, so every failure inside
`core/` is raised as :class:`ScanError` carrying one of these codes.  The codes are part of the output
contract (docs/dicom.md, "Error codes"); ``TRANSIENT`` lists those worth retrying on the next nightly run.
"""

from __future__ import annotations

NOT_FOUND = "not_found"
PERMISSION_DENIED = "permission_denied"
EMPTY_FILE = "empty_file"
DECODE_ERROR = "decode_error"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_LARGE = "too_large"
NO_PIXELS = "no_pixels"
OUTSIDE_ALLOWED_ROOT = "outside_allowed_root"
IO_ERROR = "io_error"
TIMEOUT = "timeout"
INTERNAL_ERROR = "internal_error"
# A DICOM object whose Modality / SOP class lies outside the bundle's scope (core/readers/scope.py): not run through the
# model at all, status "skipped".
OUT_OF_SCOPE = "out_of_scope"
# A DICOMweb server that kept answering 429/5xx, or refused connections, through every retry with back-off
# (core/io/dicomweb.py): the image may be fine, the next run will try it again.
SERVER_UNAVAILABLE = "server_unavailable"

ALL_CODES = (
    NOT_FOUND,
    PERMISSION_DENIED,
    EMPTY_FILE,
    DECODE_ERROR,
    UNSUPPORTED_FORMAT,
    TOO_LARGE,
    NO_PIXELS,
    OUTSIDE_ALLOWED_ROOT,
    IO_ERROR,
    TIMEOUT,
    INTERNAL_ERROR,
    OUT_OF_SCOPE,
    SERVER_UNAVAILABLE,
)

# Errors caused by the environment rather than the file's content: a later run may well succeed.
TRANSIENT = frozenset({IO_ERROR, TIMEOUT, INTERNAL_ERROR, SERVER_UNAVAILABLE})

# Codes that describe a file we deliberately did not label (status "skipped" rather than "error").
SKIP_CODES = frozenset({NO_PIXELS, OUT_OF_SCOPE})


class ScanError(Exception):
    """A failure tied to one input file, carrying a stable error code for the output row."""

    def __init__(self, code: str, message: str = "") -> None:
        if code not in ALL_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class ManifestError(ValueError):
    """A manifest that cannot be processed; raised before any work starts so nothing is written."""


class BundleError(ValueError):
    """A model bundle that is missing, incomplete or does not match its recorded content hash."""
