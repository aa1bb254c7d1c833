"""Synthetic data made on the spot, so the product runs end to end offline: nothing downloaded, nothing bundled.

:mod:`.phantoms` draws radiograph-like phantoms of each body part; :mod:`.non_radiographs` draws images that are
not body-part radiographs (the ``other`` class); :mod:`.sample_archive` writes both as a mixed-format archive
(PNG, JPEG, DICOM, with a known share of wrong DICOM headers) with its ground-truth manifest.  Used by the demo,
the tests and the benchmarks, never as a stand-in for real data in a measurement of real data.

May import: :mod:`core.errors`, :mod:`core.io`, :mod:`core.readers`.
"""
