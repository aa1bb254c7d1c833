"""Weak-labels benchmark: training on what DICOM headers claim, on sample archives where the truth is known.

For each header-noise setting (uniform 5 / 15 / 30 % by default, and 15 % class-dependent: a wrong ``arm`` header
says ``hand``, ``abdomen`` says ``pelvis`` and back, as protocol defaults do) one training archive of DICOM
phantoms (seed 0; same images and true labels in every setting, only the headers change) is listed with
``--label-from-header`` (:func:`core.readers.header.build_header_manifest`), and three models are trained with the
same recipe (``--backbone``, ``--image-size``, ``--epochs``):

* ``truth``: on the true labels (once: they do not change with the noise);
* ``header_plain``: on the header labels as they are (``--no-plain`` leaves it out);
* ``header_cl``: ``--noisy-labels`` (:func:`core.training.noisy.train_noisy`: ``--folds`` fold models of
  ``--fold-epochs`` epochs, cleanlab pruning, the final model on the rest).

Figures per setting: accuracy on a held-out archive (seed 1, true labels; argmax of the body-part
probabilities, so abstention does not enter) of each model, ``header_cl`` minus ``truth`` (goal: within 0.02 at
15 %); precision/recall of finding the wrong headers of the training archive by (a) the audit
(:func:`core.trust.audit.build_audit` on labels of the training archive by the ``header_cl`` model) and (b) the rows
confident learning pruned (out-of-fold; goal for the audit: >= 0.9 / 0.9 at 15 %); the estimated noise rate
(confident learning's joint, and the audit's disagreement share) against the true one.

No Ray: the fold and final runs call :func:`core.training.run_training` exactly as Ray Train's workers do.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pyarrow.parquet as pq

from core.io import schema

CONFUSIONS = {"arm": "hand", "hand": "arm", "abdomen": "pelvis", "pelvis": "abdomen"}
HOLDOUT_SEED = 1
# The training.json hyperparameters that must match for --reuse-truth to keep a truth-trained model.
TRUTH_RECIPE = ("backbone", "image_size", "epochs", "batch_size", "base_lr", "lr_schedule", "seed", "precision")


def _settings(args: argparse.Namespace) -> list[tuple[str, float, dict | None]]:
    out = [(f"uniform {round(100 * r)}%", r, None) for r in args.noise]
    if args.class_dependent is not None:
        out.append((f"class-dependent {round(100 * args.class_dependent)}%", args.class_dependent, CONFUSIONS))
    return out


def _config(args, manifest: str, out: str, **extra):
    """The demo's from-scratch recipe (one-cycle schedule, bfloat16 where the CPU has AMX), at this bench's size."""
    from dataclasses import replace

    from core.training import from_scratch_recipe

    cfg = from_scratch_recipe(manifest, out, args.backbone, args.image_size, args.epochs)
    tuned = {k: v for k, v in (("batch_size", args.batch_size), ("base_lr", args.lr)) if v is not None}
    return replace(cfg, **tuned, **extra)


def _accuracy(bundle_dir: str, manifest: str) -> float:
    """Held-out accuracy of the argmax over the bundle's classes (every image gets a class: no abstention)."""
    from benchmarks.trust import label_rows
    from core.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    t = pq.read_table(manifest, columns=[schema.URI, schema.IMAGE_ID, schema.LABEL]).to_pylist()
    rows = label_rows(bundle, [r[schema.URI] for r in t], [r[schema.IMAGE_ID] for r in t])
    right = [
        r["probabilities"] is not None and bundle.classes[int(np.argmax(r["probabilities"]))] == truth[schema.LABEL]
        for r, truth in zip(rows, t, strict=True)
    ]
    return float(np.mean(right))


def _precision_recall(flagged: set[str], wrong: set[str]) -> tuple[float | None, float | None]:
    hit = len(flagged & wrong)
    return (hit / len(flagged) if flagged else None), (hit / len(wrong) if wrong else None)


def _audit(bundle_dir: str, header_manifest: str, out: str) -> dict:
    """Label the header manifest's rows with the model (as ``scanlabel label`` would) and audit them."""
    from benchmarks.trust import label_rows
    from core.model.bundle import load_bundle
    from core.trust.audit import build_audit

    t = pq.read_table(header_manifest, columns=[schema.URI, schema.IMAGE_ID])
    labels = os.path.join(out, "labels")
    label_rows(load_bundle(bundle_dir), t.column(0).to_pylist(), t.column(1).to_pylist(), labels)
    flagged, summary = build_audit(labels, header_manifest)
    return {"flagged": {r[schema.IMAGE_ID] for r in flagged}, "summary": summary}


def _same_truth(cfg, train_count: int) -> bool:
    """Whether ``cfg.out`` already holds a truth-trained bundle of this recipe, trained on the truth archive that
    is there now (its manifest's hash) with ``train_count`` rows: then ``--reuse-truth`` skips retraining it."""
    from core.training.publish import fingerprint

    path = os.path.join(cfg.out, "training.json")
    if not (os.path.exists(path) and os.path.exists(cfg.manifest)):
        return False
    with open(path) as f:
        done = json.load(f)
    hp = done.get("hyperparameters", {})
    return (
        all(hp.get(k) == getattr(cfg, k) for k in TRUTH_RECIPE)
        and done.get("manifest_sha256") == fingerprint(cfg.manifest)
        and pq.read_metadata(cfg.manifest).num_rows == train_count
    )


def _one_setting(args, name: str, noise: float, confusions, holdout: str, truth_acc: float) -> dict:
    from core.io.manifests import write_manifest
    from core.readers.header import build_header_manifest
    from core.synthetic.sample_archive import DICOM_FORMATS, write_sample_archive
    from core.training.noisy import LABEL_ISSUES, train_locally, train_noisy

    quiet = train_locally(lambda m: None)
    out = os.path.join(args.out, name.replace(" ", "_").replace("%", "pct"))
    archive = str(write_sample_archive(os.path.join(out, "archive"), args.train_count, 0, header_noise=noise,
                                       confusions=confusions, formats=sorted(DICOM_FORMATS)))  # fmt: skip
    header_manifest = os.path.join(out, "header_manifest.parquet")
    write_manifest(build_header_manifest(os.path.dirname(archive)).table, header_manifest)
    truth = pq.read_table(archive).to_pylist()
    # The header manifest lists the archive folder: its image_id is images/FILE_NAME.
    wrong = {"images/" + os.path.basename(r[schema.URI]) for r in truth if r["header_wrong"]}
    result: dict = {"setting": name, "true_noise_rate": len(wrong) / len(truth), "truth_accuracy": truth_acc}
    if args.plain:
        quiet(_config(args, header_manifest, os.path.join(out, "header_plain")), "plain")
        result["header_plain_accuracy"] = _accuracy(os.path.join(out, "header_plain"), holdout)
    cfg = _config(args, header_manifest, os.path.join(out, "header_cl"), noisy_labels=True, folds=args.folds,
                  fold_epochs=args.fold_epochs)  # fmt: skip
    _, info = train_noisy(cfg, quiet, os.path.join(out, "work"), log=lambda m: None)
    result["header_cl_accuracy"] = _accuracy(cfg.out, holdout)
    result["cl_minus_truth"] = result["header_cl_accuracy"] - truth_acc
    flagged = set(pq.read_table(os.path.join(out, "work", LABEL_ISSUES)).column(schema.IMAGE_ID).to_pylist())
    result["cl_flagged"], result["cl_pruned"] = len(flagged), info["pruned"]
    result["cl_precision"], result["cl_recall"] = _precision_recall(flagged, wrong)
    result["cl_estimated_noise_rate"] = info["estimated_noise_rate"]
    audit = _audit(cfg.out, header_manifest, os.path.join(out, "audit"))
    result["audit_flagged"] = len(audit["flagged"])
    result["audit_precision"], result["audit_recall"] = _precision_recall(audit["flagged"], wrong)
    result["audit_estimated_noise_rate"] = audit["summary"]["estimated_wrong_share"]
    return result


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def run_weak_labels(args: argparse.Namespace) -> int:
    from core.synthetic.sample_archive import write_sample_archive
    from core.training.noisy import train_locally

    args.out = os.path.abspath(args.out)
    holdout = str(write_sample_archive(os.path.join(args.out, "holdout"), args.holdout_count, HOLDOUT_SEED))
    # The true labels are the same in every setting (same seed and count): one truth-trained model serves all.
    from core.synthetic.sample_archive import DICOM_FORMATS

    truth_dir = os.path.join(args.out, "truth_archive")
    truth_cfg = _config(args, os.path.join(truth_dir, "manifest.parquet"), os.path.join(args.out, "truth"))
    reused = args.reuse_truth and _same_truth(truth_cfg, args.train_count)
    if not reused:
        write_sample_archive(truth_dir, args.train_count, 0, formats=sorted(DICOM_FORMATS))
        train_locally(lambda m: None)(truth_cfg, "truth")
    truth_acc = _accuracy(truth_cfg.out, holdout)
    print(
        f"[weak-labels] truth-trained model{' (reused)' if reused else ''}: held-out accuracy {truth_acc:.3f} "
        f"({args.holdout_count} images)"
    )
    results = []
    for name, noise, confusions in _settings(args):
        r = _one_setting(args, name, noise, confusions, holdout, truth_acc)
        results.append(r)
        print(
            f"[weak-labels] {name}: true noise {_fmt(r['true_noise_rate'])}; held-out accuracy truth "
            f"{_fmt(truth_acc)}, header plain {_fmt(r.get('header_plain_accuracy'))}, header+CL "
            f"{_fmt(r['header_cl_accuracy'])} (CL - truth {r['cl_minus_truth']:+.3f}); audit P/R "
            f"{_fmt(r['audit_precision'])}/{_fmt(r['audit_recall'])} ({r['audit_flagged']} flagged); CL flagged "
            f"P/R {_fmt(r['cl_precision'])}/{_fmt(r['cl_recall'])} ({r['cl_flagged']}, {r['cl_pruned']} pruned); "
            "estimated noise CL "
            f"{_fmt(r['cl_estimated_noise_rate'])}, audit {_fmt(r['audit_estimated_noise_rate'])}"
        )
    with open(os.path.join(args.out, "weak_labels_bench.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items() if k != "bench_run"}, "results": results}, f, indent=1)
    print("[weak-labels] " + json.dumps(results))
    return 0


def register(sub) -> None:
    """``weak-labels`` of ``python -m jobs.bench``: its sub-command and flags."""
    p = sub.add_parser("weak-labels", help="header-trained vs truth-trained accuracy, audit P/R, noise estimates")
    p.add_argument("--train-count", type=int, default=700, help="DICOM phantoms of the training archive")
    p.add_argument("--holdout-count", type=int, default=350, help="phantoms of the held-out archive (seed 1)")
    p.add_argument("--noise", type=float, nargs="*", default=[0.05, 0.15, 0.30], help="uniform header-noise rates")
    p.add_argument("--class-dependent", type=float, default=0.15, help="class-dependent noise rate (<0: none)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--fold-epochs", type=int, default=None, help="epochs of each fold model (default: --epochs)")
    p.add_argument("--no-plain", dest="plain", action="store_false", help="skip the header-trained model without CL")
    p.add_argument(
        "--reuse-truth",
        action="store_true",
        help="keep the truth-trained model an earlier run left in --out when its recipe and archive match (the true "
        "labels do not change with the noise): a further setting costs no truth training",
    )
    p.add_argument("--backbone", default="compact_resnet")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None, help="default: the demo recipe's (32)")
    p.add_argument("--lr", type=float, default=None, help="base LR; default: the demo recipe's (4e-3, one-cycle)")
    p.add_argument("--out", default="bench_out/weak_labels")
    p.set_defaults(bench_run=_checked)


def _checked(args: argparse.Namespace) -> int:
    if args.class_dependent is not None and args.class_dependent < 0:
        args.class_dependent = None
    return run_weak_labels(args)
