"""`scanlabel audit`: every image whose DICOM header and model disagree, with the estimated share of wrong headers.

scanlabel audit --labels DIR --manifest HEADER_MANIFEST --out DIR [--model-id ID]
    writes audit.parquet, audit.csv (feeds `scanlabel review --apply`), audit.html and summary.json
(HEADER_MANIFEST: from `scanlabel manifest --root DIR --label-from-header`; docs/weak-labels.md)
"""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--labels", required=True, help="labels dataset directory written by `scanlabel label`")
    p.add_argument(
        "--manifest", required=True, help="the header-labelled manifest (`scanlabel manifest --label-from-header`)"
    )
    p.add_argument("--out", required=True, help="directory for audit.parquet, audit.csv, audit.html, summary.json")
    p.add_argument("--model-id", default=None, help="which model's labels (default: the latest)")


def run(args: argparse.Namespace) -> int:
    from core.trust.audit import AUDIT_CSV, AUDIT_HTML, write_audit

    s = write_audit(args.labels, args.manifest, args.out, args.model_id)
    share = s["estimated_wrong_share"]
    print(
        f"[audit] {s['compared']} image(s) where header and model name a body part; they disagree on "
        f"{s['disagree']}" + (f" (estimated wrong headers {100 * share:.1f} %)" if share is not None else "")
    )
    for key, title in (("per_header_class", "header class"), ("per_label_source", "label source")):
        shares = ", ".join(f"{k} {100 * v['estimated_wrong_share']:.1f} %" for k, v in s[key].items())
        print(f"[audit] per {title}: {shares or '-'}")
    print(f"[audit] look: {s['files'][AUDIT_HTML]}")
    print(f"[audit] correct: fill in corrected_label in {s['files'][AUDIT_CSV]}, then")
    print(
        f"[audit]   scanlabel review --apply {s['files'][AUDIT_CSV]} --out corrections.parquet [--base-manifest TRAIN]"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel audit", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
