"""Which DICOM objects a bundle is meant to label at all, decided from the header before any pixels are used.

``Modality`` (0008,0060) and the SOP class are written by the acquiring device or the archive, not typed by a
technologist the way ``BodyPartExamined`` is, so they are trustworthy enough to decide scope: an RT dose grid,
a segmentation, an ultrasound clip or a CT slice is not a projection radiograph, and the body-part model must
not be asked about it.  Out-of-scope objects become ``skipped`` rows with code ``out_of_scope``.
"""

from __future__ import annotations

# Projection radiography: computed radiography, digital radiography, generic radiographic imaging.
DEFAULT_MODALITIES: tuple[str, ...] = ("CR", "DX", "RG")
