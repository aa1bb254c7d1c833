"""Trust benchmark: the demo's three trust figures over several trainings and a larger held-out archive.

The demo prints abstention, accepted accuracy and ECE for one training and 400 held-out phantoms, where one error
moves accepted accuracy by 0.0025 and a training seed moves it by ~0.01.  This bench trains the demo's recipe
(:func:`core.training.from_scratch_recipe`) with several seeds and scores each bundle on:

* the demo's held-out archive (seed 1: 400 phantoms + 60 generated non-radiographs),
* optionally a larger one (seed 2, ``--holdout-count`` phantoms) for a tighter estimate,
* unseen generated non-radiographs (seed 7, 200), the "≥ 95 % given no body part" figure,
* pydicom-data's two real radiographs RG1 (CR chest) and RG3 (CR distal tibia) where the package is installed:
  inputs only, never fed back into anything.

No Ray: accuracy does not depend on it, and the demo's Ray Train run with one worker calls the same
:func:`core.training.run_training`; labels come from the labeling job's own row logic
(:func:`core.labeling.batches.decode_batch`, :class:`core.labeling.batches.BatchClassifier`) and the figures from
:func:`core.trust.evaluation.evaluate`, as in the demo.  Accuracy figures do not depend on machine load either, so this
bench needs no quiet machine; a training takes what the demo's does (BENCHMARKS.md, "Demo time").
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from core.io import schema

LABEL_BATCH = 64
DEMO_HOLDOUT = (1, 400, 60)  # seed, phantoms, non-radiographs: the demo's held-out archive
OOD_SEED, OOD_COUNT = 7, 200
FIGURES = ("n", "abstention_rate", "accuracy_accepted", "ece_before", "ece_after")
REAL_RADIOGRAPHS = {"RG1": ("RG1_UNCR.dcm", "chest"), "RG3": ("RG3_UNCR.dcm", "leg")}


def real_radiographs() -> dict[str, tuple[str, str]]:
    """name -> (path, body part) of pydicom-data's real CR radiographs; empty where the package is missing."""
    try:
        import data_store
    except ImportError:
        return {}
    root = Path(data_store.__file__).parent / "data"
    found = {name: (str(root / f), part) for name, (f, part) in REAL_RADIOGRAPHS.items()}
    return {k: v for k, v in found.items() if os.path.exists(v[0])}


def label_rows(bundle, uris: list[str], ids: list[str], out: str | None = None) -> list[dict]:
    """Label ``uris`` exactly as a labeling job's tasks would (bundle scope, calibration, abstention); the rows
    are also committed as a labels dataset under ``out`` when given, for :func:`core.trust.evaluation.evaluate`."""
    from core.labeling.batches import BatchClassifier, decode_batch
    from core.labeling.store import PartWriter

    classifier = BatchClassifier(bundle, LABEL_BATCH)
    writer = PartWriter(out) if out else None
    rows: list[dict] = []
    for start in range(0, len(uris), LABEL_BATCH):
        batch = {
            schema.URI: np.asarray(uris[start : start + LABEL_BATCH], dtype=object),
            schema.IMAGE_ID: np.asarray(ids[start : start + LABEL_BATCH], dtype=object),
        }
        table = classifier.label_batch(decode_batch(batch, bundle.preprocess, modalities=bundle.modalities))
        rows.extend(table.to_pylist())
        if writer is not None:
            writer.add(table)
    if writer is not None:
        writer.flush()
    return rows


def _evaluate(bundle_dir: str, manifest: str, out: str) -> dict:
    from core.model.bundle import load_bundle
    from core.trust.evaluation import evaluate

    table = pq.read_table(manifest, columns=[schema.URI, schema.IMAGE_ID])
    labels = os.path.join(out, "labels")
    label_rows(load_bundle(bundle_dir), table.column(0).to_pylist(), table.column(1).to_pylist(), labels)
    return evaluate(labels, manifest, os.path.join(out, "report"), model=bundle_dir)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run_trust(args: argparse.Namespace) -> int:
    import tensorflow as tf

    from core.model.bundle import load_bundle
    from core.synthetic.sample_archive import write_sample_archive
    from core.training import from_scratch_recipe, run_training

    out = os.path.abspath(args.out)
    scale = {"side_scale": args.side_scale}
    train = str(
        write_sample_archive(os.path.join(out, "train"), args.train_count, 0, other_count=args.train_other, **scale)
    )
    seed, count, other = DEMO_HOLDOUT
    s1 = write_sample_archive(os.path.join(out, "holdout_s1"), count, seed, other_count=other, **scale)
    holdouts = {"s1": str(s1)}
    if args.holdout_count:
        s2 = write_sample_archive(os.path.join(out, "holdout_s2"), args.holdout_count, 2, other_count=0, **scale)
        holdouts["s2"] = str(s2)
    ood = str(write_sample_archive(os.path.join(out, "ood_s7"), 0, OOD_SEED, other_count=OOD_COUNT))
    real = real_radiographs()
    print(f"[trust] archives written under {out}; real radiographs: {sorted(real) or 'none (pydicom-data missing)'}")

    results = []
    for seed in args.seeds:
        bundle_dir = os.path.join(out, f"bundle_seed{seed}")
        cfg = from_scratch_recipe(train, bundle_dir, args.backbone, args.image_size, args.epochs, seed=seed)
        run_training(cfg, tf.distribute.get_strategy(), log=lambda m: None)
        result: dict = {"training_seed": seed}
        for name, manifest in holdouts.items():
            m = _evaluate(bundle_dir, manifest, os.path.join(out, f"eval_seed{seed}_{name}"))
            result[name] = {k: m.get(k) for k in FIGURES}
            print(
                f"[trust] seed {seed} held-out {name} ({m['n']} rows): abstention "
                f"{_fmt(m['abstention_rate'], '.2%')}  accepted accuracy {_fmt(m['accuracy_accepted'], '.3f')}  "
                f"ECE {_fmt(m['ece_before'], '.3f')} -> {_fmt(m['ece_after'], '.3f')}"
            )
        m = _evaluate(bundle_dir, ood, os.path.join(out, f"eval_seed{seed}_ood"))
        result["non_radiographs_without_body_part"] = m.get("other_without_body_part")
        kept = _fmt(m["other_without_body_part"], ".1%")
        print(f"[trust] seed {seed} unseen non-radiographs given no body part: {kept}")
        if real:
            bundle = load_bundle(bundle_dir)
            rows = label_rows(bundle, [p for p, _ in real.values()], list(real))
            for (name, (_, part)), row in zip(real.items(), rows, strict=True):
                probs = dict(zip(bundle.classes, row["probabilities"] or [], strict=False))
                result[name] = {"expected": part, "label": row["label"], "abstain_reason": row["abstain_reason"]}
                result[name]["p_expected"] = probs.get(part)
                print(
                    f"[trust] seed {seed} {name} (real CR {part}): {row['label']}"
                    f"{' (abstained: ' + row['abstain_reason'] + ')' if row['abstain_reason'] else ''}"
                    f"  p({part})={_fmt(probs.get(part), '.3f')}"
                )
        results.append(result)
    with open(os.path.join(out, "trust_bench.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("[trust] " + json.dumps(results))
    return 0


def register(sub) -> None:
    """``trust`` of ``python -m jobs.bench``: its sub-command and flags."""
    from jobs.demo import DEMO_BACKBONE, DEMO_IMAGE_SIZE, FULL_RECIPE

    p = sub.add_parser(
        "trust", help="the demo's trust figures over several trainings, a larger held-out archive and RG1/RG3"
    )
    p.add_argument("--train-count", type=int, default=FULL_RECIPE.phantoms, help="training phantoms (the demo's)")
    p.add_argument("--train-other", type=int, default=FULL_RECIPE.other, help="non-radiographs (the demo's)")
    p.add_argument("--holdout-count", type=int, default=1000, help="phantoms of the extra seed-2 archive; 0: none")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds, one training each")
    p.add_argument("--backbone", default=DEMO_BACKBONE)
    p.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE)
    p.add_argument("--epochs", type=int, default=FULL_RECIPE.epochs)
    p.add_argument(
        "--side-scale", type=float, default=1.0, help="phantom height and width scale of every archive (sample's)"
    )
    p.add_argument("--out", default="bench_out/trust")
    p.set_defaults(bench_run=run_trust)
