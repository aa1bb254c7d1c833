"""The --allowed-root boundary: local paths by realpath, object-store URIs by bucket and key prefix."""

from __future__ import annotations

import os

import pytest

from core import errors
from core.io import access


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "archive"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "archive2").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "x.dcm").write_bytes(b"x")
    (root / "sub" / "a.dcm").write_bytes(b"a")
    (root / "escape.dcm").symlink_to(tmp_path / "secret" / "x.dcm")
    (root / "escape_dir").symlink_to(tmp_path / "secret")
    (root / "inner.dcm").symlink_to(root / "sub" / "a.dcm")
    (tmp_path / "root_link").symlink_to(root)
    return tmp_path, root


def test_local_paths(tree):
    base, root = tree
    roots = [str(root)]
    allowed = [
        root / "sub" / "a.dcm",
        root / "inner.dcm",
        f"{root}/sub/../sub/a.dcm",
        f"{root}//sub/./a.dcm",
        f"file://{root}/sub/a.dcm",
        root / "not_yet_there.dcm",  # a missing file is not_found later, not outside
        root,
    ]
    refused = [
        root / "escape.dcm",
        root / "escape_dir" / "x.dcm",
        f"{root}/../secret/x.dcm",
        f"{root}/sub/../../secret/x.dcm",
        base / "archive2" / "a.dcm",  # shares the string prefix "archive", not the directory
        f"file://{root}/../secret/x.dcm",
        "/etc/passwd",
        f"{root}/a\0.dcm",
        "s3://bucket/archive/a.dcm",
    ]
    for uri in allowed:
        assert access.is_allowed(str(uri), roots), uri
        access.check_allowed(str(uri), roots)
    for uri in refused:
        assert not access.is_allowed(str(uri), roots), uri
        with pytest.raises(errors.ScanError) as e:
            access.check_allowed(str(uri), roots)
        assert e.value.code == errors.OUTSIDE_ALLOWED_ROOT
        assert str(base) not in e.value.message  # the message never names where it resolved


def test_root_given_through_a_symlink_or_relative_path(tree, monkeypatch):
    base, root = tree
    assert access.is_allowed(str(root / "sub" / "a.dcm"), [str(base / "root_link")])
    assert access.is_allowed(str(base / "root_link" / "sub" / "a.dcm"), [str(root)])
    monkeypatch.chdir(base)
    assert access.is_allowed("archive/sub/a.dcm", ["archive"])
    assert not access.is_allowed("secret/x.dcm", ["archive"])


def test_no_roots_means_no_restriction(tree):
    base, _ = tree
    assert access.is_allowed("/etc/passwd", [])
    access.check_allowed(str(base / "secret" / "x.dcm"), ())


def test_several_roots(tree):
    base, root = tree
    roots = [str(root), "s3://bucket/archive/"]
    assert access.is_allowed(str(root / "sub" / "a.dcm"), roots)
    assert access.is_allowed("s3://bucket/archive/a.dcm", roots)
    assert not access.is_allowed(str(base / "secret" / "x.dcm"), roots)


@pytest.mark.parametrize(
    "uri, allowed",
    [
        ("s3://bucket/archive/a.dcm", True),
        ("s3://bucket/archive/sub/deep/a.dcm", True),
        ("s3://bucket/archive", True),
        ("s3://bucket/archive2/a.dcm", False),  # prefix by segment, not by string
        ("s3://bucket/other/a.dcm", False),
        ("s3://bucket/archive/../other/a.dcm", False),  # resolved: outside
        ("s3://bucket/other/../archive/a.dcm", False),  # literal key: outside (stores treat .. literally)
        ("s3://bucket/archive/./a.dcm", True),
        ("s3://bucket/../../etc/passwd", False),  # climbs above the bucket
        ("s3://other-bucket/archive/a.dcm", False),
        ("gs://bucket/archive/a.dcm", False),  # another store
        ("s3://bucket/archive/a.dcm?endpoint_override=evil.example:9000", False),  # another endpoint
        ("/bucket/archive/a.dcm", False),
    ],
)
def test_object_store_prefixes(uri, allowed):
    assert access.is_allowed(uri, ["s3://bucket/archive/"]) is allowed
    assert access.is_allowed(uri, ["s3://bucket/archive"]) is allowed


def test_gcs_alias_and_endpoint_roots():
    assert access.is_allowed("gcs://b/p/x", ["gs://b/p"])
    assert access.is_allowed("gs://b/p/x", ["gcs://b/p/"])
    assert access.is_allowed("s3://b/p/x?endpoint_override=minio:9000", ["s3://b/p?endpoint_override=minio:9000"])
    assert not access.is_allowed("s3://b/p/x", ["s3://b/p?endpoint_override=minio:9000"])
    assert access.is_allowed("s3://b/anything", ["s3://b"])
    with pytest.raises(ValueError):
        access.is_allowed("s3://b/x", ["s3://b/../x"])


def test_verify_open_file_uses_the_opened_descriptor(tree):
    base, root = tree
    fd = os.open(root / "escape.dcm", os.O_RDONLY)  # what a symlink swapped in after the check would open
    try:
        with pytest.raises(errors.ScanError) as e:
            access.verify_open_file(fd, [str(root)])
        assert e.value.code == errors.OUTSIDE_ALLOWED_ROOT
        access.verify_open_file(fd, [])  # no roots: nothing to verify
    finally:
        os.close(fd)
    fd = os.open(root / "inner.dcm", os.O_RDONLY)
    try:
        access.verify_open_file(fd, [str(root)])
    finally:
        os.close(fd)


def test_validate_roots_refuses_typos_before_any_work(tree):
    base, root = tree
    assert access.validate_roots([str(root), "s3://b/p/"]) == (str(root), "s3://b/p/")
    assert access.validate_roots([]) == ()
    for bad in ([str(base / "archvie")], [str(root / "sub" / "a.dcm")], [""], ["s3://b/../.."]):
        with pytest.raises(ValueError):
            access.validate_roots(bad)


def test_decode_batch_refuses_a_bad_root_for_the_whole_batch(tree):
    import numpy as np

    from core.labeling.batches import decode_batch
    from core.model.preprocess import PreprocessConfig

    base, root = tree
    batch = {"uri": np.array([str(root / "sub" / "a.dcm")]), "image_id": np.array(["a"])}
    with pytest.raises(ValueError, match="not an existing directory"):
        decode_batch(batch, PreprocessConfig(image_size=32), allowed_roots=[str(base / "typo")])
