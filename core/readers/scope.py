"""Which DICOM objects a bundle is meant to label at all, decided from the header before any pixels are used.

Why the header may be trusted here when ``BodyPartExamined`` is not
    ``Modality`` (0008,0060) and the SOP Class UID are written by the acquiring device (or the archive's
    conversion software) from the kind of acquisition it performs: a CT scanner writes ``CT`` and CT Image
    Storage, a treatment planning system writes ``RTDOSE`` and RT Dose Storage, whatever the patient or the
    protocol.  They are part of the object's definition (an RT Dose object *is* an RT Dose object), and PACS,
    viewers and routers already depend on them, so a wrong value breaks visibly.  ``BodyPartExamined`` is
    typed or picked from a protocol by a technologist, is optional, and is wrong often enough (the wrong
    protocol chosen, a default never changed) that the project only ever *compares* it with the pixels
    (``header_agrees``), never labels by it.  So scope is decided from Modality and SOP class, the body part
    from the pixels.

The rule (:func:`out_of_scope_reason`)
    1. A ``Modality`` that is present must be one of the scope's modalities (``CR``/``DX``/``RG`` by default:
       projection radiography).  A Modality that is not a DICOM code string at all is out of scope.
    2. While the scope holds only projection radiography modalities, a registered SOP class must be a
       projection-radiography storage class (CR, DX, mammography, intra-oral) whose modality family is in the
       scope - this is what catches secondary captures, whose Modality is often ``OT`` or absent and whose
       pixels can be anything (a screenshot, a scanned form), and non-image objects (SR, KO, PR, RT plans).
       A scope widened on purpose (``--modalities CR,DX,CT``) leaves the SOP class to rule 1, except that an
       object without a Modality must at least be of an image storage class.
    3. A private (unregistered) SOP class, or no SOP class, is judged by Modality alone; an object with
       neither says nothing about itself and is left to the pixel-level abstention.

Out-of-scope objects become ``skipped`` rows with code ``out_of_scope`` (:data:`core.errors.OUT_OF_SCOPE`) and
an ``error_detail`` built only from the Modality code (echoed only when it is a DICOM defined term) and the SOP
class's *registered* name - never from free text in the file.  PNG and JPEG have no such header; they are
always in scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Projection radiography: computed radiography, digital radiography, generic radiographic imaging.
DEFAULT_MODALITIES: tuple[str, ...] = ("CR", "DX", "RG")

# ``--modalities '*'`` (or ``all``): no header scope at all, every decodable object goes to the model.
ANY = "*"

# Modalities whose images are projection radiographs (the family the body-part model can be trained on).
RADIOGRAPHY_MODALITIES = frozenset({"CR", "DX", "RG", "MG", "IO", "PX"})

# Projection-radiography storage SOP classes -> the Modality values their images carry.
PROJECTION_SOP_CLASSES: dict[str, frozenset[str]] = {
    "1.2.840.10008.5.1.4.1.1.1": frozenset({"CR", "RG"}),  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1": frozenset({"DX", "RG", "PX"}),  # Digital X-Ray - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1": frozenset({"DX", "RG", "PX"}),  # Digital X-Ray - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2": frozenset({"MG"}),  # Digital Mammography X-Ray - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1": frozenset({"MG"}),  # Digital Mammography X-Ray - For Processing
    "1.2.840.10008.5.1.4.1.1.1.3": frozenset({"IO", "PX"}),  # Digital Intra-Oral X-Ray - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1": frozenset({"IO", "PX"}),  # Digital Intra-Oral X-Ray - For Processing
}

# DICOM PS3.3 C.7.3.1.1.1 defined terms for Modality (current and retired).  error_detail echoes a Modality
# only when it is one of these: a mis-filled field (a patient ID typed into Modality) is never written out.
DEFINED_MODALITIES = frozenset(
    """AR ASMT AU BDUS BI BMD CFM CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES FID GM HC HD IO IOL IVOCT
    IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG RESP RF RG
    RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US
    VA XA XAPROTOCOL XC AS CD CF CP CS DD DF DM DS EC FA FS LP MA MS OPR ST VF""".split()
)

_CODE = re.compile(r"^[A-Z0-9_]{1,16}$")


def normalize_modalities(values: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Upper-cased, de-duplicated modality codes; ``None`` stays ``None``; ``*``/``all`` means no scope.

    Raises ``ValueError`` naming the offending value, so a typo on the command line (``--modalities C R``)
    is refused before any work instead of silently skipping the whole archive.
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = values.split(",")
    out: list[str] = []
    for raw in values:
        code = str(raw).strip().upper()
        if not code:
            continue
        if code in (ANY, "ALL"):
            return (ANY,)
        if not _CODE.match(code):
            raise ValueError(f"{raw!r} is not a DICOM modality code (e.g. CR, DX, MG); use '*' for no scope")
        if code not in out:
            out.append(code)
    if not out:
        raise ValueError("the modality scope is empty; name at least one modality (e.g. CR,DX) or '*'")
    return tuple(out)


def sop_class_name(sop_class_uid: str | None) -> str | None:
    """The registered name of a SOP class UID (pydicom's dictionary), ``None`` if absent or private."""
    if not sop_class_uid:
        return None
    from pydicom.uid import UID

    uid = UID(str(sop_class_uid).strip())
    name = uid.name
    return name if name and name != str(uid) else None


def sop_class_keyword(sop_class_uid: str | None) -> str | None:
    """The registered keyword of a SOP class UID (``ComputedRadiographyImageStorage``), ``None`` if private."""
    if not sop_class_uid:
        return None
    from pydicom.uid import UID

    return UID(str(sop_class_uid).strip()).keyword or None


def out_of_scope_reason(
    modality: str | None,
    sop_class_uid: str | None,
    modalities: Sequence[str] | None,
    *,
    modality_unreadable: bool = False,
) -> str | None:
    """``None`` when the object is in scope, else the ``error_detail`` saying why (codes and names only).

    ``modality`` must already be sanitised (:func:`core.readers.privacy.safe_code_string`); ``modality_unreadable``
    says the attribute was present but not a code string.  ``modalities=None`` or ``('*',)`` means no scope.
    """
    if modalities is None or ANY in modalities:
        return None
    scope = {m.upper() for m in modalities}
    name = sop_class_name(sop_class_uid)
    code = modality.strip().upper() if modality else None

    def detail(why: str) -> str:
        if code:
            shown = code if code in DEFINED_MODALITIES else "not a DICOM defined term"
        else:
            shown = "unreadable" if modality_unreadable else "absent"
        sop = f"SOP class {name}" if name else "SOP class unregistered or absent"
        return f"{why}: modality {shown}, {sop}; scope {','.join(sorted(scope))}"

    if modality_unreadable:
        return detail("modality is not a DICOM code string")
    if code and code not in scope:
        return detail("modality outside the bundle's scope")
    if name:
        if scope <= RADIOGRAPHY_MODALITIES:
            family = PROJECTION_SOP_CLASSES.get(str(sop_class_uid).strip())
            if family is None:
                return detail("SOP class is not projection radiography")
            if not family & scope:
                return detail("SOP class outside the bundle's scope")
        elif not code and "Image Storage" not in name:
            return detail("not an image object")
    return None
