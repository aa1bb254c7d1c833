"""Keeping patient identity out of everything scanlabel writes.

Labels, error details and logs end up in places (dashboards, tickets, shared buckets) with far weaker access
control than the archive itself, so nothing read from a DICOM header may reach them unless it is known to be
non-identifying.  The readers follow an allow-list (only the attributes in
:data:`core.readers.SAFE_DICOM_FIELDS`, each filtered through :func:`safe_code_string`); this module adds the
deny-list used as a second line of defence (:func:`scrub`) and by tests that plant canary values.

:data:`PHI_KEYWORDS` follows the attributes that DICOM PS3.15 Annex E (Basic Application Level Confidentiality
Profile) removes or replaces, restricted to those that occur in ordinary image objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

PHI_KEYWORDS: tuple[str, ...] = (
    # patient
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientAge",
    "PatientSex", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "PatientMotherBirthName", "MilitaryRank", "BranchOfService", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "MedicalRecordLocator", "CountryOfResidence",
    "RegionOfResidence", "ResponsiblePerson", "ResponsibleOrganization", "PatientInsurancePlanCodeSequence",
    # study / visit
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "ContentDate", "ContentTime", "AcquisitionDateTime", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyDescription", "SeriesDescription",
    "ProtocolName", "RequestedProcedureDescription", "PerformedProcedureStepDescription", "ImageComments",
    "RequestAttributesSequence", "AdmissionID", "AdmittingDiagnosesDescription",
    # people and places
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName",
    "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "RequestingPhysician",
    "ScheduledPerformingPhysicianName", "StationName", "DeviceSerialNumber",
)  # fmt: skip

REDACTED = "[redacted]"

_SAFE_CODE = re.compile(r"^[A-Za-z0-9 _\-]{1,32}$")


def safe_code_string(value: Any) -> str | None:
    """A header value if it looks like a DICOM code string (letters, digits, space, ``_``, ``-``; ≤ 32 chars).

    Used for the few attributes that are written out (``BodyPartExamined``, ``Modality``, photometric
    interpretation): those are not identifying by definition, but a mis-filled field could carry free text,
    so anything that does not look like a code is dropped rather than echoed.
    """
    if value is None:
        return None
    text = str(value).strip()
    return text if _SAFE_CODE.match(text) else None


def phi_values(ds: Any) -> list[str]:
    """Every non-trivial string value of a PHI attribute in ``ds`` (person names also split into components),
    longest first so that :func:`scrub` replaces a full name before its parts."""
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence

    values: set[str] = set()

    def add(v: Any) -> None:
        if isinstance(v, Sequence):
            for item in v:
                for sub in item.iterall():
                    add(sub.value)
            return
        if isinstance(v, MultiValue | list | tuple):
            for item in v:
                add(item)
            return
        if v is None or isinstance(v, bytes):
            return
        text = str(v).strip()  # PersonName included: str() is the full "Family^Given" form
        if len(text) >= 4:
            values.add(text)
            for part in re.split(r"[\^=\\]+", text):
                if len(part.strip()) >= 4:
                    values.add(part.strip())

    for kw in PHI_KEYWORDS:
        try:
            add(ds.get(kw))
        except Exception:  # noqa: BLE001 - an unparseable value is skipped; messages never quote values anyway
            continue
    return sorted(values, key=len, reverse=True)


def scrub(text: str | None, values: Iterable[str]) -> str | None:
    """``text`` with every occurrence of any of ``values`` replaced by ``[redacted]`` (case-insensitive)."""
    if not text:
        return text
    for v in values:
        if v:
            text = re.sub(re.escape(v), REDACTED, text, flags=re.IGNORECASE)
    return text
