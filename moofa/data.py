"""Training data: ImageFolder-style directories, the built-in digits set, synthetic images,
and batches with random-resized-crop, flip and an elastic resolution drawn per batch.

Everything random here is a pure function of ``(seed, epoch, batch number, sample index)``,
so a resumed run sees exactly the batches an uninterrupted one would, whatever the number of
loader workers, and every rank of a distributed run uses the same resolution per batch.
Needs the ``moofa[train]`` extra (torch; Pillow for image files; scikit-learn for digits).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGE_EXTENSIONS",
    "Digits",
    "ElasticCollate",
    "ImageFolder",
    "SyntheticImages",
    "UnreadableImageWarning",
    "batch_seed",
    "calibration_batches",
    "load_dataset",
    "make_loader",
    "write_image_folder",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BUILTIN_DATASETS = ("digits", "synthetic")


class UnreadableImageWarning(UserWarning):
    """An image file could not be decoded and was skipped."""


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image folders needs Pillow: pip install 'moofa[train]'") from None
    return Image


def _describe_skipped(skipped: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"{len(skipped)} unreadable image(s) skipped: {shown}{more}"


class ImageFolder(torch.utils.data.Dataset):
    """Images in ``root/<class>/<file>`` (class = folder name, sorted). Items are
    ``(uint8 tensor (3, H, W), label)``.

    Unreadable files are skipped with an :class:`UnreadableImageWarning` and listed in
    ``skipped``: with ``check=True`` (default) every file is decoded once up front; files that
    still fail later (changed on disk) are skipped at load time and counted in ``n_skipped``.
    """

    def __init__(self, root: str | os.PathLike, check: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"data folder {self.root} does not exist or is not a directory")
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise ValueError(
                f"data folder {self.root} has no class folders; expected {self.root}/<class>/<image>"
                f" with images ending in {', '.join(IMAGE_EXTENSIONS)}"
            )
        samples = []
        empty = []
        for label, name in enumerate(self.classes):
            files = sorted(
                p for p in (self.root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                empty.append(name)
            samples += [(p, label) for p in files]
        if empty:
            raise ValueError(
                f"data folder {self.root}: class folder(s) {empty[:5]} hold no image "
                f"(allowed extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        self.skipped: list[Path] = []
        self.n_skipped = 0
        if check:
            good = []
            for path, label in samples:
                if self._decode(path) is None:
                    self.skipped.append(path)
                else:
                    good.append((path, label))
            samples = good
            if self.skipped:
                self.n_skipped = len(self.skipped)
                warnings.warn(
                    f"data folder {self.root}: {_describe_skipped(self.skipped)}",
                    UnreadableImageWarning,
                    stacklevel=2,
                )
        if not samples:
            raise ValueError(f"data folder {self.root}: no readable image left")
        self.samples = samples
        self.targets = [label for _, label in samples]

    @staticmethod
    def _decode(path: Path) -> torch.Tensor | None:
        Image = _pil()
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        img = self._decode(path)
        if img is None:
            self.n_skipped += 1
            warnings.warn(
                f"data folder {self.root}: unreadable image skipped: {path}",
                UnreadableImageWarning,
                stacklevel=2,
            )
            return None
        return img, label


class Digits(torch.utils.data.Dataset):
    """scikit-learn's handwritten digits (1,797 real 8x8 grey images, 10 classes), shipped
    inside the scikit-learn package: no download. A fixed stratified 80/20 split."""

    def __init__(self, split: str = "train"):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("the built-in digits data set needs scikit-learn: pip install 'moofa[train]'") from None
        bunch = load_digits()
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        labels = bunch.target.astype(np.int64)
        # Every 5th image of each class goes to validation: stratified and independent of any seed.
        rank_in_class = np.zeros(len(labels), dtype=np.int64)
        for c in range(10):
            idx = np.flatnonzero(labels == c)
            rank_in_class[idx] = np.arange(len(idx))
        is_val = rank_in_class % 5 == 4
        keep = is_val if split == "val" else ~is_val
        self.images = torch.from_numpy(images[keep]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
        self.targets = labels[keep].tolist()
        self.classes = [str(c) for c in range(10)]
        self.skipped: list[Path] = []
        self.n_skipped = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


class SyntheticImages(torch.utils.data.Dataset):
    """Random images (for timing runs, e.g. an epoch at 224 on a GPU); deterministic per index."""

    def __init__(self, n: int = 1024, n_classes: int = 1000, size: int = 256, seed: int = 0):
        for name, v in (("n", n), ("n_classes", n_classes), ("size", size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SyntheticImages.{name} must be a positive integer, got {v!r}")
        self.n, self.size, self.seed = n, size, seed
        self.classes = [str(c) for c in range(n_classes)]
        self.targets = [int(t) for t in np.random.default_rng(seed).integers(0, n_classes, n)]
        self.skipped: list[Path] = []
        self.n_skipped = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return torch.randint(0, 256, (3, self.size, self.size), dtype=torch.uint8, generator=g), self.targets[i]


def load_dataset(source: str | os.PathLike, split: str = "train", **kwargs) -> ImageFolder | Digits | SyntheticImages:
    """``"digits"``, ``"synthetic"`` or a folder holding ``train/<class>/...`` and ``val/<class>/...``."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if source == "digits":
        return Digits(split)
    if source == "synthetic":
        return SyntheticImages(**kwargs)
    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"data must be one of {list(BUILTIN_DATASETS)} or an existing folder, got {str(source)!r}")
    if not (root / split).is_dir():
        raise ValueError(
            f"data folder {root} has no '{split}' folder; expected {root}/train/<class>/<image> "
            f"and {root}/val/<class>/<image>"
        )
    return ImageFolder(root / split)


def write_image_folder(dataset, root: str | os.PathLike, limit: int | None = None) -> Path:
    """Write a data set's images as PNG files under ``root/<class>/`` (e.g. digits, for a demo)."""
    Image = _pil()
    root = Path(root)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        img, label = dataset[i]
        folder = root / dataset.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:06d}.png")
    return root


# --- batches ---------------------------------------------------------------------------------


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """The seed of one global batch (shared by all ranks)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(batch)]).generate_state(1)[0])


def _random_resized_box(h: int, w: int, rng: np.random.Generator, scale, ratio) -> tuple[int, int, int, int]:
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    # Fallback: the whole image cropped to the nearest allowed aspect ratio, centred.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(img.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True).squeeze(0)


class ElasticCollate:
    """Turns ``(image uint8, label, sample index, batch seed)`` items into a normalised batch.

    Training: one resolution per batch drawn from ``resolutions`` with the batch seed, then
    per image a random-resized-crop (``scale``, ``ratio``) and a horizontal flip (p = 0.5).
    Evaluation: resize the shorter side to ``resolution / 0.875`` and crop the centre.
    Unreadable images (``None`` items) are dropped.
    """

    def __init__(
        self,
        resolutions: Sequence[int],
        train: bool = True,
        scale=(0.08, 1.0),
        ratio=(3 / 4, 4 / 3),
        mean=MEAN,
        std=STD,
    ):
        self.resolutions = tuple(int(r) for r in resolutions)
        if not self.resolutions or min(self.resolutions) < 1:
            raise ValueError(f"resolutions must be positive integers, got {list(resolutions)}")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        self.train, self.scale, self.ratio = train, tuple(scale), tuple(ratio)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def resolution(self, seed: int) -> int:
        if not self.train or len(self.resolutions) == 1:
            return self.resolutions[0]
        return self.resolutions[int(np.random.default_rng(seed).integers(0, len(self.resolutions)))]

    def __call__(self, items):
        items = [it for it in items if it[0] is not None]
        if not items:
            return None
        res = self.resolution(items[0][3])
        images, labels = [], []
        for (img, label), index, _, seed in ((it[0], it[1], it[2], it[3]) for it in items):
            img = img.float().div_(255.0)
            h, w = img.shape[1:]
            if self.train:
                rng = np.random.default_rng([seed, index])
                top, left, ch, cw = _random_resized_box(h, w, rng, self.scale, self.ratio)
                img = _resize(img[:, top : top + ch, left : left + cw], (res, res))
                if rng.random() < 0.5:
                    img = img.flip(2)
            else:
                short = int(math.ceil(res / 0.875))
                nh, nw = (
                    (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
                )
                img = _resize(img, (nh, nw))
                top, left = (nh - res) // 2, (nw - res) // 2
                img = img[:, top : top + res, left : left + res]
            images.append((img - self.mean) / self.std)
            labels.append(label)
        return torch.stack(images), torch.tensor(labels, dtype=torch.long)


class _Keyed(torch.utils.data.Dataset):
    """Items keyed by (index, batch seed): the collate needs both to draw its randomness."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        item = self.dataset[index]
        return (None, -1, index, seed) if item is None else (item, index, index, seed)


class _EpochBatches(torch.utils.data.Sampler):
    """The batches of one epoch for one rank: a permutation drawn from (seed, epoch), cut into
    global batches of ``batch_size * world_size``, each rank taking its slice; starts at
    ``start_batch`` so a resumed run continues mid-epoch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        epoch: int,
        shuffle: bool,
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.shuffle, self.drop_last, self.rank, self.world_size = shuffle, drop_last, rank, world_size
        self.start_batch = start_batch

    def n_batches(self) -> int:
        g = self.batch_size * self.world_size
        return self.n // g if self.drop_last else -(-self.n // g)

    def __len__(self) -> int:
        return max(0, self.n_batches() - self.start_batch)

    def __iter__(self):
        order = (
            np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        g = self.batch_size * self.world_size
        for b in range(self.start_batch, self.n_batches()):
            chunk = order[b * g : (b + 1) * g]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if len(mine) == 0:
                continue
            s = batch_seed(self.seed, self.epoch, b)
            yield [(int(i), s) for i in mine]


def make_loader(
    dataset,
    batch_size: int,
    resolutions: Sequence[int],
    *,
    train: bool = True,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    scale=(0.08, 1.0),
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A loader over one epoch (training: shuffled, last partial batch dropped, elastic
    resolution; evaluation: in order, at ``resolutions[0]``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if train and len(dataset) < batch_size * world_size:
        raise ValueError(
            f"the training set has {len(dataset)} images, fewer than one global batch "
            f"({batch_size} x {world_size} processes); lower batch_size"
        )
    sampler = _EpochBatches(
        len(dataset),
        batch_size,
        seed,
        epoch,
        shuffle=train,
        drop_last=train,
        rank=rank,
        world_size=world_size,
        start_batch=start_batch,
    )
    return torch.utils.data.DataLoader(
        _Keyed(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=ElasticCollate(resolutions, train=train, scale=scale),
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def calibration_batches(dataset, n: int, batch_size: int, resolution: int, *, seed: int, scale=(0.08, 1.0)) -> list:
    """The first ``n`` training batches of images (labels dropped) at one resolution, for
    BatchNorm recalibration: the same images for a seed on every call and every process."""
    loader = make_loader(dataset, min(batch_size, len(dataset)), [resolution], train=True, seed=seed, scale=scale)
    return [images for _, (images, _) in zip(range(n), loader)]
