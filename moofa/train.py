"""Progressive-shrinking training of a moofa supernet, on one process or under ``torchrun``.

Phases (a TOML file, see ``moofa/configs/``): the full network (the teacher), then elastic
kernel, depth (two phases) and expand (two phases), each with its epochs, learning rate,
warm-up and number of subnets sampled per step; knowledge distillation from the teacher,
label smoothing, SGD with Nesterov momentum, cosine schedule with linear warm-up, float16
autocast on GPU. ``python -m moofa.train CONFIG --workdir DIR [--resume]``; under
``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel
(NCCL on GPU, Gloo on CPU).

Exact resume: every random choice (data order, augmentation, resolution, sampled subnets,
dropout) is drawn from ``(seed, phase, epoch, batch)``, and a checkpoint holds the model,
the optimizer and the position, so ``--resume`` continues bit for bit where the last
checkpoint was written. Checkpoints are written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._io import atomic_write, atomic_write_text

__all__ = [
    "CHECKPOINT_FORMAT",
    "Phase",
    "TrainConfig",
    "TrainResult",
    "builtin_configs",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "train",
    "train_main",
]

CHECKPOINT_FORMAT = "moofa-train-v1"
CONFIG_DIR = Path(__file__).with_name("configs")
CHECKPOINT = "checkpoint.pt"
TEACHER = "teacher.pt"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CSV_FIELDS = [
    "kind",
    "phase",
    "epoch",
    "batch",
    "global_step",
    "lr",
    "loss",
    "resolution",
    "top1_largest",
    "top1_smallest",
    "seconds",
]


# --- configuration -------------------------------------------------------------------------


@dataclass
class Phase:
    """One training phase. ``kernels``/``depths``/``expands``: "max" (largest choice only),
    "all", or an integer N (the N largest choices)."""

    name: str
    epochs: int
    lr: float
    warmup_epochs: int = 0
    subnets_per_step: int = 1
    kernels: str | int = "max"
    depths: str | int = "max"
    expands: str | int = "max"


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the published runs' (REFERENCE.md)."""

    space: object = "moofa"  # a registered name or a moofa.Space
    data: str = "digits"
    phases: list = field(default_factory=list)
    n_classes: int | None = None  # default: the data set's class count
    batch_size: int = 64
    val_batch_size: int = 128
    workers: int = 0
    seed: int = 0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    dropout: float = 0.1
    kd_ratio: float = 1.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    crop_scale: tuple = (0.08, 1.0)
    resolutions: list | None = None  # default: the space's
    amp: bool = True
    checkpoint_every: int = 0  # steps; 0: only at the end of every epoch
    log_every: int = 50
    steps_per_epoch: int | None = None  # cap on batches per epoch (quick runs, tests)
    val_batches: int | None = None  # cap on validation batches
    calib_batches: int = 8  # training batches that recalibrate BatchNorm before validating a subnet
    val_every_epochs: int = 1  # validate every N epochs (0: only at the end of each phase)

    def space_obj(self):
        from .spaces import get_space

        return get_space(self.space)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["space"] = self.space_obj().to_dict()
        d["crop_scale"] = list(self.crop_scale)
        return d


def builtin_configs() -> list[str]:
    """Names of the configs shipped in ``moofa/configs`` (pass them instead of a path)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def _toml_load(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {path} is not valid TOML: {exc}") from None


def _choice_spec(where: str, value, n_choices: int):
    if value in ("max", "all"):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n_choices:
        raise ValueError(
            f"{where} must be 'max', 'all' or an integer 1..{n_choices} (how many of the largest "
            f"choices), got {value!r}"
        )
    return value


def load_config(source, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML path, a built-in config name (see
    :func:`builtin_configs`), a dict or a TrainConfig; ``overrides`` replace top-level keys.
    Unknown keys and values of the wrong kind raise ``ValueError`` naming them."""
    from .spaces import Space, get_space

    if isinstance(source, TrainConfig):
        raw = {f.name: getattr(source, f.name) for f in dataclasses.fields(TrainConfig)}
        raw["phases"] = [dataclasses.asdict(p) if isinstance(p, Phase) else p for p in source.phases]
        where = "config"
    elif isinstance(source, dict):
        raw, where = copy.deepcopy(source), "config"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file() and str(source) in builtin_configs():
            path = CONFIG_DIR / f"{source}.toml"
        if not path.is_file():
            raise ValueError(f"config {str(source)!r} is neither a file nor a built-in config {builtin_configs()}")
        raw, where = _toml_load(path), f"config {path}"
    else:
        raise TypeError(f"config must be a path, a built-in name, a dict or a TrainConfig, got {type(source).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    space = raw.get("space", "moofa")
    try:
        if isinstance(space, dict):
            space = Space.from_dict(space)
        space = get_space(space)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: space: {exc}") from None
    raw["space"] = space

    defaults = TrainConfig()
    cfg_kwargs = {}
    for name in known - {"space", "phases"}:
        if name not in raw:
            continue
        value, default = raw[name], getattr(defaults, name)
        cfg_kwargs[name] = _check_value(where, name, value, default)
    cfg = TrainConfig(space=space, phases=[], **cfg_kwargs)
    if cfg.resolutions is not None:
        bad = [r for r in cfg.resolutions if r not in space.resolutions]
        if bad:
            raise ValueError(
                f"{where}: resolutions {bad} are not in space {space.name!r} (allowed: {list(space.resolutions)})"
            )
    if not 0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1:
        raise ValueError(f"{where}: crop_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}")

    phases = raw.get("phases")
    if not isinstance(phases, list) or not phases:
        raise ValueError(f"{where}: phases must be a non-empty list of [[phases]] tables")
    phase_fields = {f.name for f in dataclasses.fields(Phase)}
    for i, p in enumerate(phases):
        if isinstance(p, Phase):
            p = dataclasses.asdict(p)
        if not isinstance(p, dict):
            raise ValueError(f"{where}: phases[{i}] must be a table, got {type(p).__name__}")
        unknown = sorted(set(p) - phase_fields)
        if unknown:
            raise ValueError(f"{where}: phases[{i}]: unknown key(s) {unknown}; allowed: {sorted(phase_fields)}")
        for req in ("name", "epochs", "lr"):
            if req not in p:
                raise ValueError(f"{where}: phases[{i}] needs '{req}'")
        pw = f"{where}: phases[{i}] ({p['name']!r})"
        ph = Phase(
            name=str(p["name"]),
            epochs=_check_value(pw, "epochs", p["epochs"], 1, minimum=1),
            lr=_check_value(pw, "lr", p["lr"], 0.1),
            warmup_epochs=_check_value(pw, "warmup_epochs", p.get("warmup_epochs", 0), 0),
            subnets_per_step=_check_value(pw, "subnets_per_step", p.get("subnets_per_step", 1), 1, minimum=1),
            kernels=_choice_spec(f"{pw}: kernels", p.get("kernels", "max"), len(space.kernels)),
            depths=_choice_spec(f"{pw}: depths", p.get("depths", "max"), len(space.depths)),
            expands=_choice_spec(f"{pw}: expands", p.get("expands", "max"), len(space.expands)),
        )
        if ph.warmup_epochs > ph.epochs:
            raise ValueError(f"{pw}: warmup_epochs ({ph.warmup_epochs}) exceeds epochs ({ph.epochs})")
        cfg.phases.append(ph)
    return cfg


def _check_value(where: str, name: str, value, default, minimum=None):
    """Type-check a config value against the default's kind."""
    if name in ("n_classes", "steps_per_epoch", "val_batches") and value is None:
        return None
    if name == "resolutions":
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and v > 0 for v in value):
            raise ValueError(f"{where}: resolutions must be a list of positive integers, got {value!r}")
        return list(value)
    if name == "crop_scale":
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise ValueError(f"{where}: crop_scale must be two numbers [min, max], got {value!r}")
        return (float(value[0]), float(value[1]))
    if name == "data":
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: data must be 'digits', 'synthetic' or a folder path, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) or name in ("n_classes", "steps_per_epoch", "val_batches"):
        lo = (
            1
            if minimum is None
            and name
            in (
                "batch_size",
                "val_batch_size",
                "n_classes",
                "steps_per_epoch",
                "val_batches",
                "log_every",
                "calib_batches",
            )
            else (minimum or 0)
        )
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{where}: {name} must be an integer >= {lo}, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {name} must be a non-negative number, got {value!r}")
        return float(value)
    return value


def _allowed(spec, choices: Sequence) -> list:
    ordered = sorted(choices)
    if spec == "max":
        return ordered[-1:]
    if spec == "all":
        return ordered
    return ordered[-int(spec) :]


# --- checkpoints -----------------------------------------------------------------------------


def _atomic_save(obj, path: Path) -> None:
    """torch.save through a temporary file: a crash at any point leaves either the old
    checkpoint or the new one, never a torn one."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint (tensors and plain data only: ``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torn, truncated or foreign files fail in many ways
        raise ValueError(
            f"checkpoint {path} is corrupt or not a moofa training checkpoint: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a moofa training checkpoint (format "
            f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
            f"expected {CHECKPOINT_FORMAT!r})"
        )
    return ckpt


# --- metrics ---------------------------------------------------------------------------------


class _Metrics:
    """Appends records to metrics.jsonl and metrics.csv (rank 0 only)."""

    def __init__(self, workdir: Path, enabled: bool):
        self.jsonl, self.csv, self.enabled = workdir / METRICS_JSONL, workdir / METRICS_CSV, enabled

    def truncate_after(self, global_step: int) -> None:
        """On resume: drop records past the checkpoint, which the run will write again."""
        if not self.enabled or not self.jsonl.is_file():
            return
        keep = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line torn by the interruption
                continue
            if rec.get("global_step", 0) <= global_step:
                keep.append(rec)
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in keep))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(self.csv, buf.getvalue())

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        new = not self.csv.is_file()
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)

    def read(self) -> list[dict]:
        if not self.jsonl.is_file():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    workdir: Path
    weights: Path  # the trained supernet, moofa's format (.npz + .json)
    global_step: int
    top1_largest: float | None
    top1_smallest: float | None
    metrics: list


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


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


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
    """Train a supernet by progressive shrinking; see the module docstring.

    ``config``: anything :func:`load_config` takes. ``workdir`` receives ``checkpoint.pt``,
    ``teacher.pt``, ``metrics.jsonl``/``.csv``, ``config.json`` and, at the end,
    ``supernet.npz``/``supernet.json``. ``resume=True`` continues from ``checkpoint.pt``.
    ``on_step(record)`` is called after every optimizer step (on every rank).
    ``check_sync``: at the end of every phase, ranks compare a checksum of their weights and
    raise if they differ (recorded in the metrics).
    Launched by ``torchrun``, this trains with DistributedDataParallel over all processes.
    """
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from ._progress import Progress
    from .data import load_dataset, make_loader
    from .nn.supernet import Supernet, check_same_space

    cfg = load_config(config)
    space = cfg.space_obj()
    workdir = Path(workdir)
    world, rank, local_rank = _dist_info()
    distributed = world > 1
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    own_group = False
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        own_group = True
    is_main = rank == 0

    try:
        ckpt = None
        ckpt_path = workdir / CHECKPOINT
        if is_main:
            workdir.mkdir(parents=True, exist_ok=True)
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            check_same_space(space, _space_from(ckpt), f"checkpoint {ckpt_path}")
            if ckpt["config_phases"] != [dataclasses.asdict(p) for p in cfg.phases]:
                raise ValueError(
                    f"checkpoint {ckpt_path} was written with other phases than this config; "
                    "resume with the config the run started with"
                )
        elif ckpt_path.exists():
            raise ValueError(
                f"{workdir} already holds a run ({CHECKPOINT}); pass resume=True (--resume) "
                "to continue it, or choose another workdir"
            )

        train_set = load_dataset(cfg.data, "train", **_synthetic_kwargs(cfg, space))
        val_set = load_dataset(cfg.data, "val", **_synthetic_kwargs(cfg, space, val=True))
        n_classes = cfg.n_classes or len(train_set.classes)
        if n_classes < len(train_set.classes):
            raise ValueError(f"n_classes={n_classes} but the data has {len(train_set.classes)} classes")
        resolutions = cfg.resolutions or list(space.resolutions)
        torch.manual_seed(_step_seed(cfg.seed, 1 << 20))  # the initial weights depend on the seed only
        model = Supernet(
            space, n_classes=n_classes, dropout=cfg.dropout, bn_momentum=cfg.bn_momentum, bn_eps=cfg.bn_eps
        )
        if ckpt is not None:
            model.load_state_dict_checked(ckpt["model"], source=f"checkpoint {ckpt_path}")
        model.to(dev)
        if is_main:
            atomic_write_text(workdir / "config.json", json.dumps(cfg.to_dict(), indent=1))

        metrics = _Metrics(workdir, is_main)
        if ckpt is not None:
            metrics.truncate_after(ckpt["global_step"])
        pos = (
            {"phase": 0, "epoch": 0, "batch": 0, "global_step": 0}
            if ckpt is None
            else {k: int(ckpt[k]) for k in ("phase", "epoch", "batch", "global_step")}
        )
        use_amp = cfg.amp and dev.type == "cuda"
        global_batch = cfg.batch_size * world
        lr_scale = global_batch / 64.0
        teacher = None
        top1 = (None, None)

        for phase_idx in range(pos["phase"], len(cfg.phases)):
            phase = cfg.phases[phase_idx]
            starting = ckpt is None or ckpt.get("optimizer") is None or phase_idx != pos["phase"]
            kernels = _allowed(phase.kernels, space.kernels)
            depths = _allowed(phase.depths, space.depths)
            expands = _allowed(phase.expands, space.expands)
            if starting and pos["epoch"] == 0 and pos["batch"] == 0 and _shrinks_expand(space, depths, expands):
                # Before training narrower middle layers, put the important channels first.
                trained = sum(1 for p in cfg.phases[:phase_idx] if len(_allowed(p.expands, space.expands)) > 1)
                model.sort_channels(expand_stage=min(trained, len(space.expands) - 1))
            if phase_idx > 0 and cfg.kd_ratio > 0 and teacher is None:
                teacher = _load_teacher(workdir / TEACHER, model, dev)

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
            scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
            if not starting:
                optimizer.load_state_dict(ckpt["optimizer"])
                if ckpt.get("scaler"):
                    scaler.load_state_dict(ckpt["scaler"])
            net = model
            if distributed:
                net = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True
                )

            probe = make_loader(
                train_set, cfg.batch_size, resolutions, train=True, seed=cfg.seed, world_size=world, rank=rank
            )
            n_batches = len(probe) if cfg.steps_per_epoch is None else min(len(probe), cfg.steps_per_epoch)
            total_steps = phase.epochs * n_batches
            first_epoch = pos["epoch"] if phase_idx == pos["phase"] else 0
            bar = Progress(
                total_steps,
                f"{phase.name}",
                progress and is_main,
                initial=first_epoch * n_batches + (pos["batch"] if phase_idx == pos["phase"] else 0),
            )
            last_loss = float("nan")
            for epoch in range(first_epoch, phase.epochs):
                start_batch = pos["batch"] if (phase_idx == pos["phase"] and epoch == pos["epoch"]) else 0
                loader = make_loader(
                    train_set,
                    cfg.batch_size,
                    resolutions,
                    train=True,
                    seed=_step_seed(cfg.seed, phase_idx),
                    epoch=epoch,
                    start_batch=start_batch,
                    rank=rank,
                    world_size=world,
                    workers=cfg.workers,
                    scale=cfg.crop_scale,
                    pin_memory=dev.type == "cuda",
                )
                model.train()
                t0 = time.perf_counter()
                batch_no = start_batch
                for batch in loader:
                    if batch_no >= n_batches:
                        break
                    images, labels = batch
                    images = images.to(dev, non_blocking=True)
                    labels = labels.to(dev, non_blocking=True)
                    step_in_phase = epoch * n_batches + batch_no
                    lr = _lr_at(phase, step_in_phase, n_batches, lr_scale)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    torch.manual_seed(_step_seed(cfg.seed, phase_idx, epoch, batch_no, 1))
                    rng = np.random.default_rng([cfg.seed, phase_idx, epoch, batch_no, 2])
                    soft = None
                    if teacher is not None and phase_idx > 0 and cfg.kd_ratio > 0:
                        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                            soft = F.softmax(teacher(images).float(), dim=1)
                    optimizer.zero_grad(set_to_none=True)
                    losses = []
                    for _ in range(phase.subnets_per_step):
                        model.sample_active_subnet(
                            rng,
                            kernels=kernels,
                            depths=depths,
                            expands=expands,
                            resolutions=[min(space.resolutions)],
                        )
                        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                            out = net(images)
                            loss = F.cross_entropy(out.float(), labels, label_smoothing=cfg.label_smoothing)
                            if soft is not None:
                                loss = loss + cfg.kd_ratio * _soft_cross_entropy(out.float(), soft)
                        scaler.scale(loss).backward()
                        losses.append(float(loss.detach()))
                    scaler.step(optimizer)
                    scaler.update()
                    batch_no += 1
                    pos["global_step"] += 1
                    last_loss = sum(losses) / len(losses)
                    record = {
                        "kind": "step",
                        "phase": phase.name,
                        "epoch": epoch,
                        "batch": batch_no,
                        "global_step": pos["global_step"],
                        "lr": lr,
                        "loss": last_loss,
                        "resolution": int(images.shape[-1]),
                    }
                    if is_main and (batch_no % cfg.log_every == 0 or batch_no == n_batches):
                        metrics.write({**record, "seconds": round(time.perf_counter() - t0, 4)})
                    bar.update(1, loss=f"{last_loss:.3f}")
                    if cfg.checkpoint_every and pos["global_step"] % cfg.checkpoint_every == 0 and batch_no < n_batches:
                        _save(
                            workdir,
                            is_main,
                            model,
                            optimizer,
                            scaler,
                            cfg,
                            space,
                            phase_idx,
                            epoch,
                            batch_no,
                            pos["global_step"],
                            distributed,
                        )
                    if on_step is not None:
                        on_step(record)
                # End of epoch: validate the largest and smallest subnets, then checkpoint.
                last_epoch = epoch == phase.epochs - 1
                due = last_epoch or (cfg.val_every_epochs > 0 and (epoch + 1) % cfg.val_every_epochs == 0)
                top1 = (
                    _validate(model, train_set, val_set, cfg, resolutions, dev, kernels, depths, expands)
                    if is_main and due
                    else (None, None)
                )
                if is_main:
                    metrics.write(
                        {
                            "kind": "epoch",
                            "phase": phase.name,
                            "epoch": epoch,
                            "batch": batch_no,
                            "global_step": pos["global_step"],
                            "loss": last_loss,
                            "top1_largest": top1[0],
                            "top1_smallest": top1[1],
                            "seconds": round(time.perf_counter() - t0, 4),
                        }
                    )
                last_epoch = epoch == phase.epochs - 1
                if last_epoch:
                    nxt = (phase_idx + 1, 0, 0)
                else:
                    nxt = (phase_idx, epoch + 1, 0)
                if phase_idx == 0 and last_epoch and is_main:
                    # The full network at the end of the first phase teaches all later ones.
                    _atomic_save(
                        {"format": CHECKPOINT_FORMAT + "-teacher", "model": model.state_dict()},
                        workdir / TEACHER,
                    )
                _save(
                    workdir,
                    is_main,
                    model,
                    None if last_epoch else optimizer,
                    None if last_epoch else scaler,
                    cfg,
                    space,
                    *nxt,
                    pos["global_step"],
                    distributed,
                )
            bar.close()
            if check_sync and distributed:
                _check_sync(model, phase.name, metrics, pos["global_step"])
            pos.update(phase=phase_idx + 1, epoch=0, batch=0)
            ckpt = None

        weights = workdir / "supernet.npz"
        if is_main:
            weights = model.cpu().save(workdir / "supernet")
        if distributed:
            dist.barrier()
        return TrainResult(workdir, weights, pos["global_step"], top1[0], top1[1], metrics.read())
    finally:
        if own_group:
            dist.destroy_process_group()


def _synthetic_kwargs(cfg: TrainConfig, space, val: bool = False) -> dict:
    if cfg.data != "synthetic":
        return {}
    return {
        "n": 256 if val else 2048,
        "n_classes": cfg.n_classes or space.n_classes,
        "size": max(space.resolutions) * 8 // 7,
        "seed": 1 if val else 0,
    }


def _space_from(ckpt: dict):
    from .spaces import Space

    return Space.from_dict(ckpt["space"])


def _shrinks_expand(space, depths, expands) -> bool:
    """Whether the phase can run middle layers narrower than the widest."""
    if space.expand_by_depth:
        return min(space.expand_by_depth[d] for d in depths) < max(space.expands)
    return min(expands) < max(space.expands)


def _load_teacher(path: Path, model, dev):
    import torch

    if not path.is_file():
        raise ValueError(
            f"the teacher weights {path} are missing: the first phase writes them; "
            "resume the run from its start or set kd_ratio = 0"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    except Exception as exc:
        raise ValueError(f"teacher weights {path} are corrupt: {type(exc).__name__}: {exc}") from None
    teacher = copy.deepcopy(model).cpu()
    teacher.load_state_dict_checked(state, source=f"teacher weights {path}")
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


def _validate(model, train_set, val_set, cfg, resolutions, dev, kernels, depths, expands):
    """Top-1 of the largest and the smallest subnet of the phase, each with its BatchNorm
    statistics recalibrated on ``calib_batches`` training batches (shared statistics fit
    no single subnet, as in OFA's validation)."""
    from .data import make_loader
    from .subnet import Subnet

    res = max(resolutions)
    loader = make_loader(val_set, cfg.val_batch_size, [res], train=False, workers=cfg.workers)
    calib = make_loader(
        train_set,
        min(cfg.batch_size, len(train_set)),
        [res],
        train=True,
        seed=cfg.seed + 1,
        scale=cfg.crop_scale,
    )
    batches = [images for _, (images, _) in zip(range(cfg.calib_batches), calib)]
    largest = model.largest_subnet(res)
    low = Subnet.from_dict(
        model.sample_active_subnet(0, kernels=kernels[:1], depths=depths[:1], expands=expands[:1]).to_dict()
        | {"image_size": res}
    )
    active = model.active
    scores = []
    for net in (largest, low):
        sub = model.recalibrated(net, [b.to(dev) for b in batches])
        scores.append(evaluate(sub, loader, dev, cfg.val_batches))
    model.set_active_subnet(active)
    return tuple(scores)


def _save(workdir, is_main, model, optimizer, scaler, cfg, space, phase, epoch, batch, global_step, distributed):
    import torch.distributed as dist

    if is_main:
        _atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "space": space.to_dict(),
                "config_phases": [dataclasses.asdict(p) for p in cfg.phases],
                "phase": phase,
                "epoch": epoch,
                "batch": batch,
                "global_step": global_step,
                "model": model.state_dict(),
                "optimizer": None if optimizer is None else optimizer.state_dict(),
                "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
            },
            workdir / CHECKPOINT,
        )
    if distributed:
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


# --- command line ----------------------------------------------------------------------------


def train_main(argv: Sequence[str] | None = None) -> int:
    """``moofa train`` / ``python -m moofa.train``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="moofa train",
        description="Train a supernet by progressive shrinking (under torchrun: DistributedDataParallel).",
    )
    parser.add_argument("config", help=f"a TOML config path or a built-in one: {', '.join(builtin_configs())}")
    parser.add_argument("--workdir", required=True, help="folder for checkpoints, metrics and the trained weights")
    parser.add_argument("--resume", action="store_true", help="continue from WORKDIR/checkpoint.pt")
    parser.add_argument("--data", help="override the config's data: digits, synthetic or a folder")
    parser.add_argument("--batch-size", type=int, help="override the per-process batch size")
    parser.add_argument("--steps-per-epoch", type=int, help="cap the batches per epoch (quick runs)")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--check-sync", action="store_true", help="compare the replicas' weights after each phase")
    args = parser.parse_args(argv)
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
    if _dist_info()[1] == 0:
        print(
            f"trained supernet: {result.weights} ({result.global_step} steps); top-1 largest "
            f"{result.top1_largest}, smallest {result.top1_smallest}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
