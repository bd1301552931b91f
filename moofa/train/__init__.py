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
checkpoint was written. Checkpoints are written to a temporary file and renamed, and carry a
SHA-256 checksum that is verified when they are read.

Modules: ``config`` (the config dataclasses and their validation), ``checkpoint``,
``metrics``, ``loop`` (the phases), ``cotrain`` (the accuracy predictor co-trained during the
phases, ``cotrain_every``), ``cli``. Importing ``moofa.train`` does not import torch;
:func:`train` and :func:`evaluate` need it.
"""

from . import cotrain
from .checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, TEACHER, load_checkpoint
from .cli import train_main
from .config import CONFIG_DIR, Phase, TrainConfig, builtin_configs, load_config
from .loop import TrainResult, evaluate, train
from .metrics import METRICS_CSV, METRICS_JSONL

main = train_main  # the command-line entry: main(argv) -> exit status

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "CONFIG_DIR",
    "METRICS_CSV",
    "METRICS_JSONL",
    "TEACHER",
    "Phase",
    "TrainConfig",
    "TrainResult",
    "builtin_configs",
    "cotrain",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "main",
    "train",
    "train_main",
]
