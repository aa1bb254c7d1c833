"""The Ray-free half of the labeling job: rows to labels, and the labels dataset that survives any crash.

:mod:`.batches` decodes a batch of manifest rows and classifies decoded batches (what Ray's decode tasks and model
actors call); :mod:`.store` is the labels dataset's commit protocol (what is done, what is left, atomic and
duplicate-free parts, compaction); :mod:`.lease` lets one run at a time write a dataset; :mod:`.run_history` reads
every run's summary back as a table and plots.

May import: :mod:`core.errors`, :mod:`core.progress`, :mod:`core.io`, :mod:`core.readers`, :mod:`core.model`,
:mod:`core.trust`.  Never Ray: ``cluster/label.py`` wraps these in Ray Data.
"""
