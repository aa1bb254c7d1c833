"""scanlabel's Ray-free core, one package per concern; ``cluster/`` wraps it in Ray, ``jobs/`` exposes it.

- :mod:`core.io`: storage URIs, the read boundary, every Parquet schema, manifests
- :mod:`core.readers`: bytes to grayscale pixels, one module per format, and what the DICOM header means
- :mod:`core.model`: backbones, the one preprocessing function, the bundle, the engines
- :mod:`core.training`: the distributed training loop, checkpoints, calibration, publishing
- :mod:`core.labeling`: rows to labels, the labels dataset's commit protocol, the lease, run history
- :mod:`core.trust`: confidence and abstention, evaluation, review, drift, reports
- :mod:`core.synthetic`: phantoms, non-radiographs and sample archives for offline runs
- :mod:`core.errors` (per-row error codes), :mod:`core.progress` (progress records) and :mod:`core.options`
  (options declared once for the API and the CLI) are shared by all.

Nothing here imports Ray (a test holds us to that).
"""
