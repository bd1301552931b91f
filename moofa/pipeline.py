"""The whole moofa workflow in one call: train a supernet, measure subnets, train a predictor,
search under a memory budget, extract the winner and check it.

    python -m moofa.pipeline --workdir runs/demo     # the digits-demo config: about a minute on 2 cores

Steps (each resumable: run the same command again after an interruption):

1. progressive-shrinking training of the supernet (``moofa.train``; default config
   ``digits-demo``: all six phases, shortened) -> ``supernet/``;
2. a balanced accuracy data set (``moofa.dataset.build_dataset``): subnets drawn evenly over
   peak-memory bins, each extracted, BatchNorm-recalibrated and evaluated on the validation
   split -> ``accuracy.jsonl``;
3. an accuracy predictor trained on it (``moofa.predictor_train``) -> ``predictor.npz/.json``;
4. the evolutionary search under the budget (``moofa.search``);
5. the winner extracted, recalibrated and measured: top-1 on the validation split, peak memory
   from the C++ evaluator and from forward hooks on the real module -> ``report.json``,
   ``winner.pt`` (TorchScript) and ``winner.json``.

The nets are tiny, so torch runs on one CPU thread by default (``threads``): more threads
gain nothing here and lose several times over on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._deps import missing_torch
from ._io import atomic_write_text

__all__ = ["DEFAULT_CONFIG", "PipelineResult", "SubnetEvaluator", "main", "pipeline_main", "run_pipeline"]

DEFAULT_CONFIG = "digits-demo"
STAGES = 5


@dataclass
class PipelineResult:
    """What the end-to-end run found; memory in items (x4 for float32 bytes)."""

    subnet: dict
    budget: int
    predicted_top1: float
    measured_top1: float
    cpp_peak: int
    hooked_peak: int
    hist_equal: bool
    mflops: float
    params: int
    dataset_records: int
    predictor_oob: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    workdir: str = ""

    def summary(self) -> str:
        return (
            f"winner under {self.budget:,} items: {self.subnet}\n"
            f"  top-1 predicted {self.predicted_top1:.2f}%, measured {self.measured_top1:.2f}% "
            f"(difference {self.measured_top1 - self.predicted_top1:+.2f} points)\n"
            f"  peak memory: C++ evaluator {self.cpp_peak:,} items, forward hooks {self.hooked_peak:,} items "
            f"({'identical' if self.hist_equal else 'DIFFERENT'} per-layer histograms)\n"
            f"  {self.mflops:.2f} MFLOPs, {self.params:,} parameters"
        )


class SubnetEvaluator:
    """Top-1 (percent) of subnets of a trained supernet on a validation split, each extracted
    and BatchNorm-recalibrated on the same fixed training batches at its own resolution."""

    def __init__(
        self,
        supernet,
        train_set,
        val_set,
        *,
        calib_batches: int = 8,
        batch_size: int = 64,
        crop_scale=(0.08, 1.0),
        seed: int = 0,
        device=None,
    ):
        self.supernet, self.train_set, self.val_set = supernet.eval(), train_set, val_set
        self.calib_batches, self.batch_size, self.crop_scale, self.seed = (
            calib_batches,
            batch_size,
            crop_scale,
            seed,
        )
        self.device = device or next(supernet.parameters()).device
        self._calib: dict[int, list] = {}
        self._val: dict[int, list] = {}

    @classmethod
    def for_config(cls, supernet, cfg, *, seed: int = 0, data=None) -> SubnetEvaluator:
        """The evaluator a training config implies: its data set (or ``data``), calibration
        batches, batch size and crop scale."""
        from .data import load_dataset

        data = cfg.data if data is None else data
        return cls(
            supernet,
            load_dataset(data, "train"),
            load_dataset(data, "val"),
            calib_batches=cfg.calib_batches,
            batch_size=cfg.batch_size,
            crop_scale=cfg.crop_scale,
            seed=seed,
        )

    def _batches(self, res: int):
        from .data import calibration_batches, make_loader

        if res not in self._calib:
            calib = calibration_batches(
                self.train_set, self.calib_batches, self.batch_size, res, seed=self.seed, scale=self.crop_scale
            )
            self._calib[res] = [x.to(self.device) for x in calib]
            self._val[res] = list(make_loader(self.val_set, 256, [res], train=False))
        return self._calib[res], self._val[res]

    def model(self, config):
        """The extracted, recalibrated subnet (eval mode)."""
        from .subnet import Subnet

        net = Subnet.from_dict(config)
        calib, _ = self._batches(net.image_size)
        return self.supernet.recalibrated(net, calib)

    def __call__(self, config) -> float:
        from .subnet import Subnet
        from .train import evaluate

        net = Subnet.from_dict(config)
        _, val = self._batches(net.image_size)
        return evaluate(self.model(net), val, self.device)


def _stage(progress: bool, n: int, text: str) -> None:
    if progress:
        print(f"[{n}/{STAGES}] {text}", file=sys.stderr, flush=True)


def run_pipeline(
    workdir: str | os.PathLike,
    *,
    config=DEFAULT_CONFIG,
    budget=None,
    n_per_bin: int = 10,
    bins: int = 8,
    predictor_epochs: int = 200,
    population: int = 100,
    generations: int = 100,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    progress: bool = True,
    device: str | None = None,
    threads: int | None = 1,
) -> PipelineResult:
    """Run the end-to-end workflow in ``workdir`` (see the module docstring).

    ``config``: a training config (see :func:`moofa.train.load_config`; default the built-in
    ``digits-demo``). ``budget``: items or a string like ``"60k"``; default the median peak of
    the accuracy data set. ``n_per_bin`` x ``bins`` subnets are evaluated for the predictor.
    ``steps_per_epoch`` caps training (quick runs). ``threads``: torch CPU threads for the
    run (restored afterwards; None: leave torch's setting). ``progress``: stage lines and
    progress bars on stderr. Writes ``report.json`` and returns a :class:`PipelineResult`.
    """
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(
            Path(workdir),
            config=config,
            budget=budget,
            n_per_bin=n_per_bin,
            bins=bins,
            predictor_epochs=predictor_epochs,
            population=population,
            generations=generations,
            seed=seed,
            steps_per_epoch=steps_per_epoch,
            progress=progress,
            device=device,
        )
    finally:
        torch.set_num_threads(before)


def _run(
    workdir: Path,
    *,
    config,
    budget,
    n_per_bin,
    bins,
    predictor_epochs,
    population,
    generations,
    seed,
    steps_per_epoch,
    progress,
    device,
) -> PipelineResult:
    import numpy as np

    from .dataset import build_dataset
    from .predictor_train import train_predictor
    from .search import search
    from .train import load_config
    from .units import parse_budget

    workdir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config, steps_per_epoch=steps_per_epoch, seed=seed)
    seconds = {}

    t0 = time.perf_counter()
    supernet = _trained_supernet(workdir / "supernet", cfg, device, progress)
    space = supernet.space  # the data set's class count
    seconds["train"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    _stage(progress, 2, f"measuring {n_per_bin} x {bins} subnets over the peak-memory range")
    evaluator = SubnetEvaluator.for_config(supernet, cfg, seed=seed)
    dataset = workdir / "accuracy.jsonl"
    summary = build_dataset(space, evaluator, dataset, n_per_bin=n_per_bin, bins=bins, seed=seed, progress=progress)
    records = [json.loads(line) for line in dataset.read_text().splitlines() if line]
    seconds["dataset"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    _stage(progress, 3, f"training the accuracy predictor on {len(records)} subnets")
    predictor = train_predictor(records, space, epochs=predictor_epochs, seed=seed, name=f"{space.name}-pipeline")
    predictor.save(workdir / "predictor")
    seconds["predictor"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    items = parse_budget(budget) if budget is not None else int(np.median([r["peak_memory"] for r in records]))
    _stage(progress, 4, f"searching under {items:,} items of peak memory")
    result = search(items, space, predictor=predictor, seed=seed, population=population, generations=generations)
    seconds["search"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    _stage(progress, 5, "extracting, measuring and exporting the winner")
    out = _check_winner(workdir, evaluator, space, result, items)
    seconds["check"] = round(time.perf_counter() - t0, 1)
    out.dataset_records = int(summary["records"])
    out.predictor_oob = dict(predictor.metadata.get("validation", {}).get("out_of_bag", {}) or {})
    out.seconds = seconds
    atomic_write_text(workdir / "report.json", json.dumps(asdict(out), indent=1))
    return out


def _trained_supernet(run_dir: Path, cfg, device: str | None, progress: bool):
    """The supernet trained in ``run_dir``: loaded when done, else trained (or resumed)."""
    from .nn import Supernet
    from .train import train

    weights = run_dir / "supernet.npz"
    if weights.is_file():
        _stage(progress, 1, f"supernet already trained: {weights.resolve()}")
    else:
        epochs = sum(p.epochs for p in cfg.phases)
        _stage(progress, 1, f"training the supernet ({len(cfg.phases)} phases, {epochs} epochs) in {run_dir.resolve()}")
        train(cfg, run_dir, resume=True, device=device, progress=progress)
    supernet = Supernet.load(weights)
    if device:
        supernet.to(device)
    return supernet


def _check_winner(workdir: Path, evaluator: SubnetEvaluator, space, result, items: int) -> PipelineResult:
    """The winner's measured top-1, its peak from the C++ evaluator and from forward hooks,
    and its export (``winner.pt``, ``winner.json``)."""
    import torch

    from .memory import profile
    from .nn import export, profile_memory
    from .subnet import Subnet

    net = Subnet.from_dict(result.subnet.to_dict())
    model = evaluator.model(net)
    measured = evaluator(net)
    shape = (1, space.in_channels, net.image_size, net.image_size)
    with torch.no_grad():
        hooked = profile_memory(model, shape)
    computed = profile(net, space)
    # The deployable winner: TorchScript (any input size) and its config.
    export(model, workdir / "winner.pt", shape)
    atomic_write_text(workdir / "winner.json", json.dumps(net.to_dict()))
    return PipelineResult(
        subnet=net.to_dict(),
        budget=int(items),
        predicted_top1=float(result.top1),
        measured_top1=float(measured),
        cpp_peak=int(result.peak),
        hooked_peak=int(hooked.peak),
        hist_equal=hooked.hist == computed.hist,
        mflops=float(computed.mflops),
        params=int(computed.params),
        dataset_records=0,
        workdir=str(workdir.resolve()),
    )


def artefacts(workdir: str | os.PathLike) -> dict[str, Path]:
    """Where a pipeline run in ``workdir`` puts what it made (absolute paths)."""
    w = Path(workdir).resolve()
    return {
        "report": w / "report.json",
        "winner (TorchScript)": w / "winner.pt",
        "winner config": w / "winner.json",
        "supernet weights": w / "supernet" / "supernet.npz",
        "predictor": w / "predictor.npz",
        "accuracy data set": w / "accuracy.jsonl",
    }


def pipeline_main(argv: Sequence[str] | None = None) -> int:
    """``moofa pipeline`` / ``python -m moofa.pipeline``: see ``--help``."""
    p = argparse.ArgumentParser(prog="moofa pipeline", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="folder for every artefact (run again to resume)")
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="training config: a TOML path or a built-in name (default: %(default)s)",
    )
    p.add_argument(
        "--budget",
        help="peak-memory budget: items (60000), '60k' or bytes ('240kB') (default: the median "
        "peak of the measured subnets)",
    )
    p.add_argument(
        "--n-per-bin", type=int, default=10, help="subnets measured per peak-memory bin (default: %(default)s)"
    )
    p.add_argument(
        "--bins", type=int, default=8, help="peak-memory bins of the accuracy data set (default: %(default)s)"
    )
    p.add_argument("--generations", type=int, default=100, help="search generations (default: %(default)s)")
    p.add_argument("--population", type=int, default=100, help="search population (default: %(default)s)")
    p.add_argument("--steps-per-epoch", type=int, help="cap the training batches per epoch (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the GPU if any)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s; the nets are tiny)")
    p.add_argument("--no-progress", action="store_true", help="no stage lines or progress bars (default: shown)")
    args = p.parse_args(argv)
    if missing_torch("pipeline"):
        return 2
    try:
        res = run_pipeline(
            args.workdir,
            config=args.config,
            budget=args.budget,
            n_per_bin=args.n_per_bin,
            bins=args.bins,
            generations=args.generations,
            population=args.population,
            seed=args.seed,
            steps_per_epoch=args.steps_per_epoch,
            progress=not args.no_progress,
            device=args.device,
            threads=args.threads,
        )
    except ValueError as exc:
        print(f"moofa pipeline: error: {exc}", file=sys.stderr)
        return 2
    print(res.summary())
    total = sum(res.seconds.values())
    print(f"  {total:.0f} s in this call ({', '.join(f'{k} {v:.0f} s' for k, v in res.seconds.items())})")
    for what, path in artefacts(args.workdir).items():
        print(f"{what + ':':<22}{path}")
    return 0


main = pipeline_main  # the command-line entry: main(argv) -> exit status


if __name__ == "__main__":
    sys.exit(pipeline_main())
