"""`scanlabel train`: fine-tune a body-part classifier with Ray Train and write a model bundle."""

from __future__ import annotations

import argparse
import sys

from jobs.common import run_main


def _modalities(text: str) -> list[str]:
    from core.readers.scope import normalize_modalities

    try:
        return list(normalize_modalities(text) or ())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="Parquet manifest with uri, image_id, label")
    p.add_argument("--out", required=True, help="bundle directory to write (local, s3:// or gs://)")
    p.add_argument("--backbone", default="efficientnet_b0")
    p.add_argument("--weights", default="imagenet", help="imagenet | none | PATH to a weights file")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--head-epochs", type=int, default=3, help="epochs on the frozen base before fine-tuning")
    p.add_argument("--fine-tune-blocks", type=int, default=2, help="top blocks of the base to unfreeze")
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--lr", type=float, default=1e-3, help="base LR for a global batch of 64 (scaled linearly)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=4, help="early stopping on validation macro-F1")
    p.add_argument("--label-map", default=None, help="JSON mapping source labels onto model classes")
    p.add_argument(
        "--modalities",
        type=_modalities,
        default=None,
        metavar="CR,DX,RG",
        help="DICOM modalities the model is for, recorded in the bundle; labeling skips other modalities as "
        "out_of_scope (default: CR,DX,RG, projection radiography)",
    )
    p.add_argument(
        "--target-abstention",
        type=float,
        default=0.01,
        help="share of in-domain validation images allowed to abstain when the bundle's min_confidence and "
        "max_ood_score are fitted (default 0.01)",
    )
    p.add_argument(
        "--ood-method",
        default="auto",
        choices=("auto", "p_other", "mahalanobis", "energy", "max_logit", "msp"),
        help="the ood_score labeling writes: auto = p_other (the learnt 'other' class) when the manifest has "
        "'other' rows, else mahalanobis (feature distance to the training split)",
    )
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-class-weights", action="store_true")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPU)")
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--gpus-per-worker", type=float, default=0)
    p.add_argument("--cpus-per-worker", type=int, default=None)
    p.add_argument(
        "--storage",
        default=None,
        help="Ray Train storage for per-epoch checkpoints (local path, NFS or s3://; shared on multi-node clusters)",
    )
    p.add_argument(
        "--run-name", default=None, help="name of the run under --storage (default: a new unique name, printed)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run --run-name under --storage from its latest checkpoint",
    )
    p.add_argument(
        "--stop-after-epoch",
        type=int,
        default=None,
        help="pause after this epoch (checkpoint kept, no bundle yet); continue later with --resume",
    )
    p.add_argument("--max-failures", type=int, default=2, help="worker failures tolerated (restart from checkpoint)")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def config_from_args(args: argparse.Namespace):
    from core.training import TrainConfig

    return TrainConfig(
        manifest=args.manifest,
        out=args.out,
        backbone=args.backbone,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        head_epochs=args.head_epochs,
        fine_tune_blocks=args.fine_tune_blocks,
        batch_size=args.batch_size,
        base_lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        augment=not args.no_augment,
        class_weighting=not args.no_class_weights,
        patience=args.patience,
        label_map=args.label_map,
        mixed_precision=args.mixed_precision,
        xla=args.xla,
        steps_per_epoch=args.steps_per_epoch,
        stop_after_epoch=args.stop_after_epoch,
        modalities=args.modalities,
        target_abstention=args.target_abstention,
        ood_method=args.ood_method,
    )


def run(args: argparse.Namespace) -> int:
    from cluster.train import DEFAULT_STORAGE, new_run_name, run_exists, train_on_ray

    cfg = config_from_args(args)
    from core.model.backbones import get_backbone, resolve_weights

    get_backbone(cfg.backbone)  # unknown names fail here, before any worker starts
    resolve_weights(cfg.weights)
    storage_path = args.storage or DEFAULT_STORAGE
    # Ray Train V2 resumes any run whose name already exists under the storage path, so the name decides
    # between "fresh" and "resume": make that explicit rather than resume (or restart) by accident.
    if args.resume:
        if not args.run_name:
            raise ValueError("--resume needs the --run-name (and --storage) of the run to continue")
        if not run_exists(storage_path, args.run_name):
            raise ValueError(f"--resume: no run {args.run_name!r} with a checkpoint under {storage_path}")
        run_name = args.run_name
    elif args.run_name:
        if run_exists(storage_path, args.run_name):
            raise ValueError(
                f"run {args.run_name!r} already exists under {storage_path}: pass --resume to continue it, "
                "or choose another --run-name"
            )
        run_name = args.run_name
    else:
        run_name = new_run_name()
    print(f"[train] run {run_name} (checkpoints under {storage_path})")
    result, error = train_on_ray(
        cfg,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        storage_path=storage_path,
        run_name=run_name,
        max_failures=args.max_failures,
    )
    if error is not None:
        print(f"scanlabel: training failed: {error}", file=sys.stderr)
        if result is None:
            print(
                f"scanlabel: continue from the last checkpoint with --resume --run-name {run_name} "
                f"--storage {storage_path}",
                file=sys.stderr,
            )
        return 1
    metrics = result.metrics or {}
    if metrics.get("status") == "paused":
        print(
            f"[train] paused after epoch {metrics.get('epoch')}: continue with --resume --run-name {run_name} "
            f"--storage {storage_path}"
        )
        return 0
    print(f"[train] done: last val macro-F1 {metrics.get('val_macro_f1')}; bundle at {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(add_arguments, run, "scanlabel train", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
