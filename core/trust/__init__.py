"""Whether a label can be trusted, and showing people the ones that can't.

:mod:`.confidence` is calibrated confidence, the out-of-distribution score and abstention thresholds (fitted at
training, applied at labeling); :mod:`.metrics` and :mod:`.calibration` measure accuracy and calibration against
ground truth; :mod:`.evaluation` is ``scanlabel evaluate``; :mod:`.report` writes its report; :mod:`.review` is the
worst-first review queue and the way corrections become training data; :mod:`.audit` lists the images whose DICOM
header and model disagree (``scanlabel audit``, docs/weak-labels.md); :mod:`.drift` compares tonight's run with
the runs before it.

May import: :mod:`core.errors`, :mod:`core.io`, :mod:`core.readers`, :mod:`core.model`, :mod:`core.labeling` (the
evaluation reads a labels dataset).  :mod:`.confidence` and :mod:`.metrics` import nothing from ``core`` but
errors, so the model and training may use them.
"""
