"""The real DICOM objects that ship with pydicom and pydicom-data, split by hand into radiographs and the rest.

The split is written out here, not derived from the headers, so the scope tests cannot pass by agreeing with
the code they test.  These files are test inputs only: nothing is trained or tuned on them.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

PYDICOM_ROOT = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_root() -> Path | None:
    """pydicom-data's file store (its import name is ``data_store``), None where the package is missing."""
    try:
        import data_store
    except ImportError:
        return None
    root = Path(data_store.__file__).parent / "data"
    return root if root.is_dir() else None


# Projection radiographs among them: three CR images in pydicom's DICOMDIR test tree, and pydicom-data's RG1
# (CR chest) and RG3 (CR distal tibia) in four encodings each.
RADIOGRAPHS = frozenset(
    {
        "dicomdirtests/77654033/CR1/6154",
        "dicomdirtests/77654033/CR2/6247",
        "dicomdirtests/77654033/CR3/6278",
        *(f"pydicom-data/RG{n}_{enc}.dcm" for n in (1, 3) for enc in ("UNCR", "UNCI", "J2KR", "J2KI")),
    }
)
# The radiographs with a known body part, and that body part.
KNOWN_BODY_PARTS = {"pydicom-data/RG1_UNCR.dcm": "chest", "pydicom-data/RG3_UNCR.dcm": "leg"}


def dicom_files() -> dict[str, Path]:
    """name -> path of every file that starts like DICOM (preamble or bare data element), both packages."""
    from core.readers import sniff_format

    roots = [("", PYDICOM_ROOT)]
    extra = pydicom_data_root()
    if extra is not None:
        roots.append(("pydicom-data/", extra))
    out: dict[str, Path] = {}
    for prefix, root in roots:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix in (".py", ".pyc"):
                continue
            try:
                if sniff_format(p.read_bytes()[:200]) != "dicom":
                    continue
            except Exception:  # noqa: BLE001 - not DICOM: not part of this corpus
                continue
            name = prefix + p.relative_to(root).as_posix()
            out[name] = p
    return out


def non_radiographs() -> dict[str, Path]:
    return {n: p for n, p in dicom_files().items() if n not in RADIOGRAPHS}
