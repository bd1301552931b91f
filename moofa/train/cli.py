"""``moofa train`` / ``python -m moofa.train`` / ``torchrun -m moofa.train``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._deps import missing_torch
from .config import builtin_configs, load_config

__all__ = ["build_parser", "train_main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moofa train",
        description="Train a supernet by progressive shrinking (under torchrun: DistributedDataParallel).",
    )
    parser.add_argument("config", help=f"a TOML config path or a built-in one: {', '.join(builtin_configs())}")
    parser.add_argument("--workdir", required=True, help="folder for checkpoints, metrics and the trained weights")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from WORKDIR/checkpoint.pt; a fresh start when there is none yet (default: off, "
        "and an existing checkpoint is an error)",
    )
    parser.add_argument("--data", help="override the config's data: digits, synthetic or a folder (default: config's)")
    parser.add_argument("--batch-size", type=int, help="override the per-process batch size (default: config's)")
    parser.add_argument("--steps-per-epoch", type=int, help="cap the batches per epoch, for quick runs (default: none)")
    parser.add_argument("--seed", type=int, help="override the seed (default: config's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the local GPU if any, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on a terminal)")
    parser.add_argument(
        "--check-sync", action="store_true", help="compare the replicas' weights after each phase (default: off)"
    )
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    """Run ``moofa train`` with ``argv`` (see ``--help``); returns the exit status. Errors in
    the config, data or checkpoint print one line and return 2; without PyTorch installed it
    says so and returns 2 (``--help`` works without it)."""
    args = build_parser().parse_args(argv)
    if missing_torch("train"):
        return 2
    from .loop import dist_info, train

    try:
        cfg = load_config(
            args.config,
            data=args.data,
            batch_size=args.batch_size,
            steps_per_epoch=args.steps_per_epoch,
            seed=args.seed,
        )
        result = train(
            cfg,
            args.workdir,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
            check_sync=args.check_sync,
        )
    except ValueError as exc:
        print(f"moofa train: error: {exc}", file=sys.stderr)
        return 2
    if dist_info()[1] == 0:
        print(
            f"trained supernet: {result.weights.resolve()} ({result.global_step} steps); top-1 largest "
            f"{result.top1_largest}, smallest {result.top1_smallest}"
        )
    return 0
