"""Training checkpoints: written atomically, verified by a SHA-256 checksum when read.

File layout: one header line ``moofa-checkpoint sha256=<64 lowercase hex digits>\\n``, then
the ``torch.save`` payload. The checksum covers the payload; the header itself must match
byte for byte. So any change to the file (a flipped bit, a truncation, a foreign file) is
refused with an error naming the file, instead of resuming from damaged weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from .._io import atomic_write
from .config import TrainConfig

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "TEACHER", "load_checkpoint", "read_verified", "write_verified"]

CHECKPOINT_FORMAT = "moofa-train-v1"
CHECKPOINT = "checkpoint.pt"
TEACHER = "teacher.pt"
_MAGIC = b"moofa-checkpoint sha256="
_HEADER_LEN = len(_MAGIC) + 64 + 1


def _how_to_proceed(path: Path) -> str:
    return (
        f"delete {path} (or move it aside) to start the run afresh, or pass a different workdir; "
        f"a checkpoint cannot be repaired"
    )


def write_verified(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` behind a checksum header, through a temporary file: a crash at
    any point leaves either the old file or the new one, never a torn one."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    header = _MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n"

    def write(f) -> None:
        f.write(header)
        f.write(payload)

    return atomic_write(path, write)


def read_verified(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """The object :func:`write_verified` stored in ``path`` (tensors and plain data only:
    ``weights_only=True``); ``ValueError`` naming the file if it is missing, damaged or foreign."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    data = path.read_bytes()
    header, payload = data[:_HEADER_LEN], data[_HEADER_LEN:]
    if not (header.startswith(_MAGIC) and header.endswith(b"\n")) or len(header) != _HEADER_LEN:
        raise ValueError(
            f"{what} {path} is corrupt or not a moofa training checkpoint: it does not start with the "
            f"moofa checksum header; {_how_to_proceed(path)}"
        )
    expected = header[len(_MAGIC) : -1]
    if hashlib.sha256(payload).hexdigest().encode("ascii") != expected:
        raise ValueError(
            f"{what} {path} is corrupt or not a moofa training checkpoint: its SHA-256 checksum does "
            f"not match its contents (damaged on disk or in transfer); {_how_to_proceed(path)}"
        )
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # a checksummed payload torch cannot read: another torch or a bug
        raise ValueError(
            f"{what} {path} is corrupt or not a moofa training checkpoint: {type(exc).__name__}: {exc}"
        ) from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a training checkpoint, verified against its checksum (see the module docstring)."""
    ckpt = read_verified(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a moofa training checkpoint (format "
            f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
            f"expected {CHECKPOINT_FORMAT!r})"
        )
    return ckpt


def save_training_state(
    workdir: Path,
    model,
    optimizer,
    scaler,
    cfg: TrainConfig,
    space,
    position: tuple[int, int, int, int],
    extra: dict | None = None,
) -> None:
    """The run's state at ``position`` = (phase, epoch, batch, global_step): where the next
    step starts. ``optimizer``/``scaler`` None at a phase's end (the next phase makes new ones).
    ``extra``: more plain-data entries (the co-trainer's waiting candidates)."""
    phase, epoch, batch, global_step = position
    write_verified(
        {
            **(extra or {}),
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


def save_teacher(workdir: Path, model) -> None:
    write_verified({"format": CHECKPOINT_FORMAT + "-teacher", "model": model.state_dict()}, workdir / TEACHER)


def load_teacher_state(workdir: Path) -> dict:
    path = workdir / TEACHER
    if not path.is_file():
        raise ValueError(
            f"the teacher weights {path} are missing: the first phase writes them; "
            "resume the run from its start or set kd_ratio = 0"
        )
    state = read_verified(path, "teacher weights")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT + "-teacher":
        raise ValueError(f"teacher weights {path} are not a moofa teacher checkpoint; {_how_to_proceed(path)}")
    return state["model"]


def checkpoint_for_resume(workdir: Path, cfg: TrainConfig, space, resume: bool) -> dict | None:
    """The checkpoint to continue from, or None for a fresh start.

    ``resume=True`` with no checkpoint in ``workdir`` starts afresh (the caller says so);
    without ``resume`` an existing checkpoint is an error (the run would overwrite it)."""
    from ..nn.supernet import check_same_space
    from ..spaces import Space

    path = workdir / CHECKPOINT
    if not resume:
        if path.exists():
            raise ValueError(
                f"{workdir} already holds a run ({CHECKPOINT}); pass resume=True (--resume) "
                "to continue it, or choose another workdir"
            )
        return None
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    check_same_space(space, Space.from_dict(ckpt["space"]), f"checkpoint {path}")
    if ckpt["config_phases"] != [dataclasses.asdict(p) for p in cfg.phases]:
        raise ValueError(
            f"checkpoint {path} was written with other phases than this config; "
            "resume with the config the run started with"
        )
    return ckpt
