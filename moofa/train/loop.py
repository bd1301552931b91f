"""The training loop: phases, epochs, steps, validation, checkpoints (see ``moofa.train``)."""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_text
from .checkpoint import (
    CHECKPOINT,
    TEACHER,
    checkpoint_for_resume,
    load_teacher_state,
    save_teacher,
    save_training_state,
)
from .config import Phase, TrainConfig, allowed_choices, load_config
from .metrics import Metrics

__all__ = ["TrainResult", "evaluate", "train"]


@dataclass
class TrainResult:
    workdir: Path
    weights: Path  # the trained supernet, moofa's format (.npz + .json)
    global_step: int
    top1_largest: float | None
    top1_smallest: float | None
    metrics: list


@dataclass
class _Run:
    """What every phase of one run shares."""

    cfg: TrainConfig
    space: Any
    workdir: Path
    dev: Any  # torch.device
    world: int
    rank: int
    model: Any  # moofa.nn.Supernet
    train_set: Any
    val_set: Any
    resolutions: list
    metrics: Metrics
    pos: dict  # phase, epoch, batch, global_step: where the next step starts
    progress: bool
    on_step: Callable[[dict], None] | None
    teacher: Any = None
    top1: tuple[float | None, float | None] = (None, None)
    cotrain: Any = None  # moofa.train.cotrain.CoTrainer when cotrain_every > 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_amp(self) -> bool:
        return self.cfg.amp and self.dev.type == "cuda"


@dataclass
class _PhaseRun:
    """One phase in progress: its elastic choices, optimizer and step count."""

    idx: int
    phase: Phase
    kernels: list
    depths: list
    expands: list
    optimizer: Any
    scaler: Any
    net: Any  # the model, or its DistributedDataParallel wrapper
    n_batches: int
    bar: Any
    last_loss: float = float("nan")
    t0: float = field(default_factory=time.perf_counter)


def _step_seed(seed: int, *parts: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(seed), *map(int, parts)]).generate_state(1)[0])


def evaluate(model, loader, device=None, max_batches: int | None = None) -> float:
    """Top-1 accuracy (percent) of ``model`` (eval mode) over ``loader``."""
    import torch

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if batch is None:
                continue
            if max_batches is not None and i >= max_batches:
                break
            images, labels = batch
            pred = model(images.to(device)).argmax(1).cpu()
            correct += int((pred == labels).sum())
            total += len(labels)
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no image")
    return 100.0 * correct / total


def _soft_cross_entropy(logits, soft_target):
    import torch

    return torch.mean(torch.sum(-soft_target * torch.log_softmax(logits, dim=1), dim=1))


def _lr_at(phase: Phase, step: int, n_batches: int, scale: float) -> float:
    base = phase.lr * scale
    warm = phase.warmup_epochs * n_batches
    total = phase.epochs * n_batches
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * base * (1 + math.cos(math.pi * t))


def dist_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _log(is_main: bool, message: str) -> None:
    """A line on stderr from rank 0."""
    if is_main:
        print(f"moofa train: {message}", file=sys.stderr, flush=True)


def train(
    config,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    check_sync: bool = False,
) -> TrainResult:
    """Train a supernet by progressive shrinking; see the ``moofa.train`` docstring.

    ``config``: anything :func:`load_config` takes. ``workdir`` receives ``checkpoint.pt``,
    ``teacher.pt``, ``metrics.jsonl``/``.csv``, ``config.json`` and, at the end,
    ``supernet.npz``/``supernet.json``. ``resume=True`` continues from ``checkpoint.pt``, or
    starts afresh when there is none yet.
    ``on_step(record)`` is called after every optimizer step (on every rank).
    ``check_sync``: at the end of every phase, ranks compare a checksum of their weights and
    raise if they differ (recorded in the metrics).
    Launched by ``torchrun``, this trains with DistributedDataParallel over all processes.
    """
    import torch
    import torch.distributed as dist

    cfg = load_config(config)
    workdir = Path(workdir)
    world, rank, local_rank = dist_info()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    own_group = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        own_group = True
    try:
        run, ckpt = _start(cfg, workdir, resume, dev, world, rank, progress, on_step)
        for phase_idx in range(run.pos["phase"], len(cfg.phases)):
            _run_phase(run, phase_idx, ckpt, check_sync)
            ckpt = None
        weights = workdir / "supernet.npz"
        if run.is_main:
            weights = run.model.cpu().save(workdir / "supernet")
        if run.distributed:
            dist.barrier()
        return TrainResult(workdir, weights, run.pos["global_step"], run.top1[0], run.top1[1], run.metrics.read())
    finally:
        if own_group:
            dist.destroy_process_group()


def _start(cfg, workdir, resume, dev, world, rank, progress, on_step) -> tuple[_Run, dict | None]:
    """Open (or resume) the run: checkpoint, data, model, metrics."""
    import torch

    from ..data import load_dataset
    from ..nn.supernet import Supernet

    space = cfg.space_obj()
    is_main = rank == 0
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_for_resume(workdir, cfg, space, resume)
    if resume and ckpt is None:
        _log(is_main, f"--resume: no {CHECKPOINT} in {workdir} yet, starting a fresh run")

    train_set = load_dataset(cfg.data, "train", **_synthetic_kwargs(cfg, space))
    val_set = load_dataset(cfg.data, "val", **_synthetic_kwargs(cfg, space, val=True))
    data_classes = len(train_set.classes)
    n_classes = cfg.n_classes or data_classes
    if n_classes < data_classes:
        raise ValueError(f"n_classes={n_classes} but the data has {data_classes} classes")
    torch.manual_seed(_step_seed(cfg.seed, 1 << 20))  # the initial weights depend on the seed only
    model = Supernet(space, n_classes=n_classes, dropout=cfg.dropout, bn_momentum=cfg.bn_momentum, bn_eps=cfg.bn_eps)
    if ckpt is not None:
        model.load_state_dict_checked(ckpt["model"], source=f"checkpoint {workdir / CHECKPOINT}")
    model.to(dev)
    if is_main:
        atomic_write_text(workdir / "config.json", json.dumps(cfg.to_dict(), indent=1))

    metrics = Metrics(workdir, is_main)
    if ckpt is None:
        pos = {"phase": 0, "epoch": 0, "batch": 0, "global_step": 0}
        for old in metrics.start_fresh():
            _log(is_main, f"fresh start: moved the earlier run's metrics aside to {old}")
    else:
        pos = {k: int(ckpt[k]) for k in ("phase", "epoch", "batch", "global_step")}
        dropped = metrics.truncate_after(pos["global_step"])
        _log(is_main, f"resuming at step {pos['global_step']} ({dropped} later metric records dropped)")
    resolutions = cfg.resolutions or list(space.resolutions)
    run = _Run(
        cfg, space, workdir, dev, world, rank, model, train_set, val_set, resolutions, metrics, pos, progress, on_step
    )
    if cfg.cotrain_every:
        from .cotrain import CoTrainer

        run.cotrain = CoTrainer(cfg, space, workdir, is_main, resolutions)
        if ckpt is None:
            old = run.cotrain.start_fresh()
            if old:
                _log(is_main, f"fresh start: moved the earlier run's co-training records aside to {old}")
        else:
            run.cotrain.truncate_after(pos["global_step"])
            run.cotrain.restore(ckpt.get("cotrain"))
    return run, ckpt


def _run_phase(run: _Run, phase_idx: int, ckpt: dict | None, check_sync: bool) -> None:
    """Train one phase from ``run.pos`` (its start, or the checkpoint's position in it)."""
    ph = _open_phase(run, phase_idx, ckpt)
    pos = run.pos
    first_epoch = pos["epoch"] if phase_idx == pos["phase"] else 0
    for epoch in range(first_epoch, ph.phase.epochs):
        start_batch = pos["batch"] if (phase_idx == pos["phase"] and epoch == pos["epoch"]) else 0
        batch_no = _run_epoch(run, ph, epoch, start_batch)
        _end_epoch(run, ph, epoch, batch_no)
    ph.bar.close()
    if check_sync and run.distributed:
        _check_sync(run.model, ph.phase.name, run.metrics, pos["global_step"])
    pos.update(phase=phase_idx + 1, epoch=0, batch=0)


def _open_phase(run: _Run, phase_idx: int, ckpt: dict | None) -> _PhaseRun:
    """Elastic choices, channel sorting, teacher, optimizer (restored mid-phase) and progress bar."""
    import torch

    from .._progress import Progress
    from ..data import make_loader

    cfg, space, model, pos = run.cfg, run.space, run.model, run.pos
    phase = cfg.phases[phase_idx]
    starting = ckpt is None or ckpt.get("optimizer") is None or phase_idx != pos["phase"]
    kernels = allowed_choices(phase.kernels, space.kernels)
    depths = allowed_choices(phase.depths, space.depths)
    expands = allowed_choices(phase.expands, space.expands)
    if starting and pos["epoch"] == 0 and pos["batch"] == 0 and _shrinks_expand(space, depths, expands):
        # Before training narrower middle layers, put the important channels first.
        trained = sum(1 for p in cfg.phases[:phase_idx] if len(allowed_choices(p.expands, space.expands)) > 1)
        model.sort_channels(expand_stage=min(trained, len(space.expands) - 1))
    if phase_idx > 0 and cfg.kd_ratio > 0 and run.teacher is None:
        run.teacher = _load_teacher(run.workdir, model, run.dev)

    optimizer, scaler = _make_optimizer(run, phase, None if starting else ckpt)
    net = model
    if run.distributed:
        device_ids = [run.dev.index] if run.dev.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    probe = make_loader(
        run.train_set, cfg.batch_size, run.resolutions, train=True, seed=cfg.seed, world_size=run.world, rank=run.rank
    )
    n_batches = len(probe) if cfg.steps_per_epoch is None else min(len(probe), cfg.steps_per_epoch)
    done = 0
    if phase_idx == pos["phase"]:
        done = pos["epoch"] * n_batches + pos["batch"]
    bar = Progress(phase.epochs * n_batches, phase.name, run.progress and run.is_main, initial=done)
    return _PhaseRun(phase_idx, phase, kernels, depths, expands, optimizer, scaler, net, n_batches, bar)


def _make_optimizer(run: _Run, phase: Phase, ckpt: dict | None):
    """SGD (no weight decay on BN parameters and biases) and the AMP gradient scaler, restored
    from ``ckpt`` when resuming inside the phase."""
    import torch

    cfg, model = run.cfg, run.model
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=phase.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=run.use_amp)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
    return optimizer, scaler


def _run_epoch(run: _Run, ph: _PhaseRun, epoch: int, start_batch: int) -> int:
    """Train one epoch from ``start_batch``; returns the batch count reached."""
    from ..data import make_loader

    cfg = run.cfg
    loader = make_loader(
        run.train_set,
        cfg.batch_size,
        run.resolutions,
        train=True,
        seed=_step_seed(cfg.seed, ph.idx),
        epoch=epoch,
        start_batch=start_batch,
        rank=run.rank,
        world_size=run.world,
        workers=cfg.workers,
        scale=cfg.crop_scale,
        pin_memory=run.dev.type == "cuda",
    )
    run.model.train()
    ph.t0 = time.perf_counter()
    batch_no = start_batch
    for images, labels in loader:
        if batch_no >= ph.n_batches:
            break
        record = _train_step(run, ph, epoch, batch_no, images, labels)
        batch_no += 1
        run.pos["global_step"] += 1
        if run.is_main and (batch_no % cfg.log_every == 0 or batch_no == ph.n_batches):
            run.metrics.write({**record, "seconds": round(time.perf_counter() - ph.t0, 4)})
        ph.bar.update(1, loss=f"{ph.last_loss:.3f}")
        step = run.pos["global_step"]
        if run.cotrain is not None and step % cfg.cotrain_every == 0:
            run.cotrain.measure(run, ph.phase.name, step)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and batch_no < ph.n_batches:
            _save(run, ph.optimizer, ph.scaler, (ph.idx, epoch, batch_no, step))
        if run.on_step is not None:
            run.on_step(record)
    return batch_no


def _train_step(run: _Run, ph: _PhaseRun, epoch: int, batch_no: int, images, labels) -> dict:
    """One optimizer step over ``phase.subnets_per_step`` sampled subnets (gradients summed),
    with distillation from the teacher after the first phase. Returns the step's record."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    cfg, dev = run.cfg, run.dev
    images = images.to(dev, non_blocking=True)
    labels = labels.to(dev, non_blocking=True)
    lr = _lr_at(ph.phase, epoch * ph.n_batches + batch_no, ph.n_batches, cfg.batch_size * run.world / 64.0)
    for group in ph.optimizer.param_groups:
        group["lr"] = lr
    torch.manual_seed(_step_seed(cfg.seed, ph.idx, epoch, batch_no, 1))
    rng = np.random.default_rng([cfg.seed, ph.idx, epoch, batch_no, 2])
    soft = None
    if run.teacher is not None and ph.idx > 0 and cfg.kd_ratio > 0:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=run.use_amp):
            soft = F.softmax(run.teacher(images).float(), dim=1)
    ph.optimizer.zero_grad(set_to_none=True)
    losses = []
    elastic = max(len(ph.kernels), len(ph.depths), len(ph.expands)) > 1
    for _ in range(ph.phase.subnets_per_step):
        net = run.model.sample_active_subnet(
            rng, kernels=ph.kernels, depths=ph.depths, expands=ph.expands, resolutions=[min(run.space.resolutions)]
        )
        if run.cotrain is not None and elastic:
            run.cotrain.sampled(net, int(images.shape[-1]))
        with torch.autocast(dev.type, dtype=torch.float16, enabled=run.use_amp):
            out = ph.net(images)
            loss = F.cross_entropy(out.float(), labels, label_smoothing=cfg.label_smoothing)
            if soft is not None:
                loss = loss + cfg.kd_ratio * _soft_cross_entropy(out.float(), soft)
        ph.scaler.scale(loss).backward()
        losses.append(float(loss.detach()))
    ph.scaler.step(ph.optimizer)
    ph.scaler.update()
    ph.last_loss = sum(losses) / len(losses)
    return {
        "kind": "step",
        "phase": ph.phase.name,
        "epoch": epoch,
        "batch": batch_no + 1,
        "global_step": run.pos["global_step"] + 1,
        "lr": lr,
        "loss": ph.last_loss,
        "resolution": int(images.shape[-1]),
    }


def _end_epoch(run: _Run, ph: _PhaseRun, epoch: int, batch_no: int) -> None:
    """Validate when due, record the epoch, write the teacher after the first phase, checkpoint."""
    cfg = run.cfg
    last_epoch = epoch == ph.phase.epochs - 1
    due = last_epoch or (cfg.val_every_epochs > 0 and (epoch + 1) % cfg.val_every_epochs == 0)
    top1 = _validate(run, ph) if run.is_main and due else (None, None)
    run.top1 = top1
    run.metrics.write(
        {
            "kind": "epoch",
            "phase": ph.phase.name,
            "epoch": epoch,
            "batch": batch_no,
            "global_step": run.pos["global_step"],
            "loss": ph.last_loss,
            "top1_largest": top1[0],
            "top1_smallest": top1[1],
            "seconds": round(time.perf_counter() - ph.t0, 4),
        }
    )
    if ph.idx == 0 and last_epoch and run.is_main:
        # The full network at the end of the first phase teaches all later ones.
        save_teacher(run.workdir, run.model)
    step = run.pos["global_step"]
    if last_epoch and run.cotrain is not None:
        _refit_predictor(run, ph)
    if last_epoch:
        _save(run, None, None, (ph.idx + 1, 0, 0, step))
    else:
        _save(run, ph.optimizer, ph.scaler, (ph.idx, epoch + 1, 0, step))


def _refit_predictor(run: _Run, ph: _PhaseRun) -> None:
    """At a phase's end: the co-trained predictor refit on the phase's records (rank 0)."""
    run.cotrain.pool = []  # candidates of this phase are not measured in the next one
    t0 = time.perf_counter()
    fit = run.cotrain.refit(ph.phase.name)
    records = run.cotrain.records(ph.phase.name) if run.is_main else []
    run.metrics.write(
        {
            "kind": "cotrain",
            "phase": ph.phase.name,
            "global_step": run.pos["global_step"],
            "records": len(records),
            "predictor": fit is not None,
            "eval_seconds": round(run.cotrain.eval_seconds, 4),
            "seconds": round(time.perf_counter() - t0, 4),
        }
    )
    run.cotrain.eval_seconds = 0.0


def _synthetic_kwargs(cfg: TrainConfig, space, val: bool = False) -> dict:
    if cfg.data != "synthetic":
        return {}
    return {
        "n": 256 if val else 2048,
        "n_classes": cfg.n_classes or space.n_classes,
        "size": max(space.resolutions) * 8 // 7,
        "seed": 1 if val else 0,
    }


def _shrinks_expand(space, depths, expands) -> bool:
    """Whether the phase can run middle layers narrower than the widest."""
    if space.expand_by_depth:
        return min(space.expand_by_depth[d] for d in depths) < max(space.expands)
    return min(expands) < max(space.expands)


def _load_teacher(workdir: Path, model, dev):
    import torch

    state = load_teacher_state(workdir)
    teacher = copy.deepcopy(model).cpu()
    teacher.load_state_dict_checked(state, source=f"teacher weights {workdir / TEACHER}")
    teacher.set_active_subnet(teacher.largest_subnet())
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    # Batch statistics (as OFA's teacher in train mode) without ever changing its buffers.
    for m in teacher.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()
            m.momentum = 0.0
    return teacher


def _validate(run: _Run, ph: _PhaseRun) -> tuple[float, float]:
    """Top-1 of the largest and the smallest subnet of the phase, each with its BatchNorm
    statistics recalibrated on ``calib_batches`` training batches (shared statistics fit
    no single subnet, as in OFA's validation)."""
    from ..data import calibration_batches, make_loader
    from ..subnet import Subnet

    cfg, model, dev = run.cfg, run.model, run.dev
    res = max(run.resolutions)
    loader = make_loader(run.val_set, cfg.val_batch_size, [res], train=False, workers=cfg.workers)
    batches = calibration_batches(
        run.train_set, cfg.calib_batches, cfg.batch_size, res, seed=cfg.seed + 1, scale=cfg.crop_scale
    )
    largest = model.largest_subnet(res)
    smallest = model.sample_active_subnet(
        0, kernels=ph.kernels[:1], depths=ph.depths[:1], expands=ph.expands[:1]
    ).to_dict()
    low = Subnet.from_dict(smallest | {"image_size": res})
    active = model.active
    scores = []
    for net in (largest, low):
        sub = model.recalibrated(net, [b.to(dev) for b in batches])
        scores.append(evaluate(sub, loader, dev, cfg.val_batches))
    model.set_active_subnet(active)
    return scores[0], scores[1]


def _save(run: _Run, optimizer, scaler, position: tuple[int, int, int, int]) -> None:
    """Checkpoint (rank 0), then wait for every rank."""
    import torch.distributed as dist

    if run.is_main:
        extra = None if run.cotrain is None else {"cotrain": run.cotrain.state()}
        save_training_state(run.workdir, run.model, optimizer, scaler, run.cfg, run.space, position, extra)
    if run.distributed:
        dist.barrier()


def _check_sync(model, phase_name, metrics, global_step):
    import torch
    import torch.distributed as dist

    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    # Three position-sensitive summaries: equal replicas give identical numbers.
    sums = torch.stack(
        [flat.sum(), (flat * torch.linspace(0, 1, len(flat), dtype=torch.float64)).sum(), flat.abs().max()]
    )
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    checksums = [g.tolist() for g in gathered]
    metrics.write({"kind": "sync", "phase": phase_name, "global_step": global_step, "checksums": checksums})
    if any(c != checksums[0] for c in checksums):
        raise RuntimeError(f"after phase {phase_name!r} the replicas' weights differ: {checksums}")
