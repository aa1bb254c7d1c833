"""`scanlabel train`: fine-tune a body-part classifier with Ray Train and write a model bundle."""

from __future__ import annotations

import argparse
import sys

from jobs.common import add_option_arguments, options_from_args, run_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option :class:`core.training.TrainConfig` declares for the CLI, then how and where it runs."""
    from core.training import TrainConfig

    add_option_arguments(p, TrainConfig)
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
    p.add_argument("--max-failures", type=int, default=2, help="worker failures tolerated (restart from checkpoint)")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` the parsed flags declare."""
    from core.training import TrainConfig

    return options_from_args(TrainConfig, args)


def run(args: argparse.Namespace) -> int:
    from cluster.train import DEFAULT_STORAGE, new_run_name, run_exists, train_on_ray

    cfg = config_from_args(args)
    from core.model.backbones import get_backbone, resolve_weights
    from core.training import TrainConfig

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
    if cfg.noisy_labels and (args.resume or cfg.stop_after_epoch):
        raise ValueError("--noisy-labels runs several trainings: --resume and --stop-after-epoch do not apply")
    if not cfg.noisy_labels and (cfg.fold_epochs is not None or cfg.folds != TrainConfig.folds):
        raise ValueError("--folds and --fold-epochs go with --noisy-labels")
    print(f"[train] run {run_name} (checkpoints under {storage_path})")
    scaling = dict(
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        max_failures=args.max_failures,
    )
    if cfg.noisy_labels:
        from cluster.train import train_noisy_on_ray

        result, error = train_noisy_on_ray(
            cfg, address=args.address, storage_path=storage_path, run_name=run_name, **scaling
        )
    else:
        result, error = train_on_ray(cfg, address=args.address, storage_path=storage_path, run_name=run_name, **scaling)
    if error is not None:
        print(f"scanlabel: training failed: {error}", file=sys.stderr)
        if result is None and not cfg.noisy_labels:
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
