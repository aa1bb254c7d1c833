"""What the DICOM header claims the body part is, in the model's vocabulary.

Headers are wrong often enough (protocol defaults, technologists' shortcuts) that they cannot be the label,
but a disagreement between header and pixels is exactly what an archive auditor wants to see.  To compare
them the free-text ``BodyPartExamined`` value (``SKULL``, ``L HAND``, ``Knee``...) has to be mapped onto the
classifier's classes; this module holds that mapping.

Policy, deliberately conservative (a wrong "disagrees" flag is worse than no flag):

* ``BodyPartExamined`` wins.  Its whole normalised value is looked up first (``UPPERARM``), then its words
  (``UPPER ARM`` → ``ARM``).  Words naming two different classes (``CHEST ABDOMEN``) give no answer.
* Only when ``BodyPartExamined`` is empty is ``StudyDescription`` consulted, by the same word rule
  (``XR HAND 3 VIEWS`` → hand), and only when that is empty too ``SeriesDescription`` (header-labelled manifests,
  :data:`HEADER_SOURCES`).  The description is never output - only the class derived from it, which is a
  closed vocabulary and so carries no patient information.
* A value mapped to ``None`` (JSON ``null``) is known and deliberately unmapped (``SPINE``, ``EXTREMITY``);
  an override file can use ``null`` to remove a default.

Override or extend the defaults with a JSON object file (``scanlabel label --header-map FILE``)::

    {"EXTREMITY": "arm", "CLAVICLE": "chest", "SHOULDER": null}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from core.io import schema, storage

CLASSES = schema.BODY_PARTS

HeaderMap = Mapping[str, "str | None"]


def _terms(cls: str, *terms: str) -> dict[str, str]:
    return {t: cls for t in terms}


# Keys are normalised: upper case, words separated by one space (see normalise()).  DICOM's defined terms
# (PS3.16 Annex L) come first on each line, common free-text variants after.
DEFAULT_HEADER_MAP: dict[str, str | None] = {
    **_terms("head", "HEAD", "SKULL", "BRAIN", "FACE", "FACIAL", "SINUS", "SINUSES", "ORBIT", "ORBITS", "MANDIBLE"),
    **_terms("head", "JAW", "TMJ", "NASAL", "CRANIUM", "CRANIAL"),
    **_terms("chest", "CHEST", "THORAX", "THORACIC", "LUNG", "LUNGS", "RIB", "RIBS", "STERNUM", "HEART", "CXR"),
    **_terms("abdomen", "ABDOMEN", "ABD", "ABDO", "ABDOMINAL", "KUB", "LIVER", "KIDNEY", "KIDNEYS", "STOMACH"),
    **_terms("abdomen", "PANCREAS", "BOWEL", "GALLBLADDER", "SPLEEN"),
    **_terms("pelvis", "PELVIS", "PELVIC", "HIP", "HIPS", "SACRUM", "COCCYX", "ACETABULUM", "BLADDER", "PROSTATE"),
    **_terms("arm", "ARM", "ARMS", "UPPERARM", "FOREARM", "HUMERUS", "RADIUS", "ULNA", "ELBOW", "SHOULDER"),
    **_terms("leg", "LEG", "LEGS", "LOWERLEG", "THIGH", "FEMUR", "KNEE", "KNEES", "PATELLA", "TIBIA", "FIBULA"),
    **_terms("leg", "ANKLE", "FOOT", "FEET", "TOE", "TOES", "CALCANEUS"),
    **_terms("hand", "HAND", "HANDS", "WRIST", "FINGER", "FINGERS", "THUMB", "SCAPHOID", "CARPUS", "METACARPAL"),
    # Known regions that straddle classes or lie outside them: recognised, deliberately unmapped.
    **dict.fromkeys(
        (
            "SPINE", "CSPINE", "TSPINE", "LSPINE", "SSPINE", "NECK", "HEADNECK", "EXTREMITY", "WHOLEBODY",
            "CHESTABDOMEN", "ABDOMENPELVIS", "CHESTABDPELVIS", "CLAVICLE", "BREAST",
        ),
        None,
    ),
}  # fmt: skip

_NON_WORD = re.compile(r"[^A-Z0-9]+")


def normalise(value: str) -> str:
    """Upper case, every run of non-alphanumerics one space: ``"l_hand "`` and ``"L-HAND"`` are one key."""
    return _NON_WORD.sub(" ", str(value).upper()).strip()


def _validate(mapping: Mapping, source: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not normalise(key):
            raise ValueError(f"{source}: header-map key {key!r} must be a non-empty string")
        if value is not None and value not in CLASSES:
            raise ValueError(f"{source}: header-map value for {key!r} must be one of {CLASSES} or null, got {value!r}")
        out[normalise(key)] = value
    return out


def load_header_map(path: str | None) -> dict[str, str | None]:
    """The default mapping, extended/overridden by a JSON object file (local path or object-store URI).

    A malformed file raises ``ValueError`` naming the problem, so a job refuses to start rather than silently
    flagging every image as disagreeing.
    """
    mapping = dict(DEFAULT_HEADER_MAP)
    if not path:
        return mapping
    try:
        data = json.loads(storage.read_bytes(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"header map {path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict):
        raise ValueError(f"header map {path}: expected a JSON object of TERM -> class, got {type(data).__name__}")
    mapping.update(_validate(data, f"header map {path}"))
    return mapping


def _lookup(value: str, mapping: HeaderMap) -> str | None:
    key = normalise(value)
    if not key:
        return None
    for whole in (key, key.replace(" ", "")):
        if whole in mapping:
            return mapping[whole]
    found = {mapping[w] for w in key.split(" ") if mapping.get(w)}
    return found.pop() if len(found) == 1 else None


# The header attributes a class may come from, in the order they are consulted, and the ``label_source`` each
# gives a header-labelled manifest row (core/readers/header.py).  The first one that is present and non-empty
# decides: a BodyPartExamined of ``SPINE`` gives no class even when the description names one.
HEADER_SOURCES: tuple[tuple[str, str], ...] = (
    ("BodyPartExamined", "body_part_examined"),
    ("StudyDescription", "study_description"),
    ("SeriesDescription", "series_description"),
)


def map_header_fields(
    fields: Mapping[str, str | None], mapping: HeaderMap | None = None
) -> tuple[str | None, str | None]:
    """``(class, label_source)`` from header attribute values keyed by keyword (see :data:`HEADER_SOURCES`).

    ``label_source`` names the attribute that decided, also when it maps onto no class; both are None when
    every attribute is absent or empty.  The values themselves never leave this function.
    """
    mapping = DEFAULT_HEADER_MAP if mapping is None else mapping
    for keyword, source in HEADER_SOURCES:
        value = fields.get(keyword)
        if value is not None and normalise(value):
            return _lookup(value, mapping), source
    return None, None


def map_header(
    body_part: str | None, study_description: str | None = None, mapping: HeaderMap | None = None
) -> str | None:
    """The model class the header names, or None when it names none or several (see module policy)."""
    fields = {"BodyPartExamined": body_part, "StudyDescription": study_description}
    return map_header_fields(fields, mapping)[0]


def header_agrees(pred_label: str | None, mapped: str | None) -> bool | None:
    """True/False when both a prediction and a mapped header exist; None (unknown) otherwise."""
    if not pred_label or not mapped:
        return None
    return pred_label == mapped
