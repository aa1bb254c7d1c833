"""Where data lives and what shape it has: storage URIs, the read boundary, every Parquet schema, manifests.

:mod:`.storage` puts local paths, ``s3://`` and ``gs://`` behind one door (pyarrow.fs); :mod:`.access` is the
``--allowed-root`` boundary a labeling run may read within; :mod:`.schema` owns every Parquet schema scanlabel
reads or writes (manifests, labels, review corrections), so a column has one definition; :mod:`.manifests` builds
manifests from what archives ship (the NIH ChestX-ray14 table, a tree of files); :mod:`.dicomweb` is the HTTP
transport to a DICOMweb server (auth, TLS, retries, WADO-RS) and :mod:`.dicomweb_listing` lists one into a manifest
(QIDO-RS, Orthanc's change log).

May import: :mod:`core.errors` and :mod:`core.killpoints` (the crash tests' hooks) only.  Everything else in
``core`` may import it.
"""
