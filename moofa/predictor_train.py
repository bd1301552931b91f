"""Training moofa's accuracy predictors in PyTorch (the ``moofa[torch]`` extra).

Recipe (measured in docs/predictor.md): an ensemble of ``members`` small MLPs, each
one hidden ReLU layer plus a linear skip over the one-hot input, trained on the
standardised top-1 with AdamW (weight decay), a cosine schedule and early stopping
on its own random validation split. The published recipe (one 400-400-400 MLP,
Adam lr 3e-2) diverges on two of three ImageNet sets; a plain ridge regression is
already close to the noise floor, so the skip keeps the linear part and the small
hidden layers only add the interactions the data supports.

Averaging one-hidden-layer members is itself one wider one-hidden-layer net (hidden
units side by side, output weights divided by the member count), so the shipped
predictor is a single ``n_features -> members*hidden -> 1`` MLP with a skip: one
C++ pass, no ensemble loop at inference.

The members train together as one batched model (``torch.bmm``), which costs about
as much as training one of them. Deterministic for a given seed (single-threaded).

Command line (the shipped predictors)::

    python -m moofa.predictor_train --all --data PATH/TO/data/accuracy --out moofa/predictors --cv 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._progress import Progress
from .predictor import SHIPPED, Predictor, one_hot
from .spaces import Space, get_space
from .subnet import Subnet

__all__ = [
    "DATASETS",
    "balance_by_bin",
    "cross_validate",
    "kendall_tau",
    "read_records",
    "train_all",
    "train_predictor",
]

# Shipped predictor name -> accuracy data set file stem (<stem>.jsonl in the --data folder).
DATASETS = {
    "ofa": "ofa-imagenet",
    "compofa": "compofa-imagenet",
    "moofa": "moofa-imagenet",
    "moofa-imagenette": "moofa-imagenette",
    "moofa-e346": "moofa-e346-imagenette",
    "moofa-e1-2": "moofa-e1-2-imagenette",
}

# Command-line defaults, relative to the current folder (never the installed package).
DEFAULT_DATA = os.path.join("data", "accuracy")
DEFAULT_OUT = "moofa-predictors"

DEFAULTS: dict[str, Any] = dict(
    hidden=32, members=16, weight_decay=1e-2, lr=1e-2, epochs=300, batch_size=128, val_fraction=0.1, patience=60
)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("training a predictor needs torch: pip install 'moofa[torch]'") from None
    return torch


def read_records(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """Records of one or more JSONL files, gzipped or not (``ks``, ``e``, ``d``, ``image_size``, ``top1``)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"data file {path} not found")
        with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {exc}") from None
                if not isinstance(rec, dict) or "top1" not in rec:
                    raise ValueError(f"{path}:{lineno}: a record needs 'ks', 'e', 'd', 'image_size' and 'top1'")
                top1 = rec["top1"]
                if isinstance(top1, bool) or not isinstance(top1, numbers.Real) or not math.isfinite(top1):
                    raise ValueError(f"{path}:{lineno}: top1 must be a finite number (percent), got {top1!r}")
                records.append(rec)
    if not records:
        raise ValueError(f"no records in {[str(p) for p in paths]}")
    return records


def _xy(records: list[dict], space: Space) -> tuple[np.ndarray, np.ndarray]:
    nets = [Subnet.from_dict(r) for r in records]
    return one_hot(nets, space), np.array([float(r["top1"]) for r in records], dtype=np.float64)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties counted), O(n^2) in blocks: fine for a few thousand points."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = len(a)
    conc = n_a = n_b = 0.0
    for i in range(0, n, 512):
        da = np.sign(a[i : i + 512, None] - a[None, :])
        db = np.sign(b[i : i + 512, None] - b[None, :])
        conc += float((da * db).sum())
        n_a += float((da != 0).sum())
        n_b += float((db != 0).sum())
    return conc / math.sqrt(n_a * n_b) if n_a and n_b else float("nan")


def _metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "kendall_tau": kendall_tau(pred, y), "n": int(len(y))}


def balance_by_bin(records: list[dict], *, key: str = "bin", seed: int = 0) -> list[dict]:
    """The records with every peak-memory bin (``record[key]``) oversampled to the fullest
    bin's count (the originals plus copies drawn in rounds, each a random order of the bin),
    so each bin weighs the same in training (paper Sec. 3.4). Deterministic per seed."""
    if not isinstance(records, list) or not all(isinstance(r, dict) and key in r for r in records):
        raise ValueError(f"records must be a list of dicts that each hold {key!r}")
    groups: dict = {}
    for r in records:
        groups.setdefault(r[key], []).append(r)
    if not groups:
        return []
    target = max(len(g) for g in groups.values())
    rng = np.random.default_rng(seed)
    out = []
    for b in sorted(groups):
        g = groups[b]
        out += g
        extra = target - len(g)
        while extra > 0:
            take = min(extra, len(g))
            out += [g[i] for i in rng.permutation(len(g))[:take]]
            extra -= take
    return out


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def _check_float(name, v, low, high=math.inf):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (low <= v < high):
        raise ValueError(f"{name} must be a number in [{low}, {high}), got {v!r}")
    return float(v)


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden,
    members,
    weight_decay,
    lr,
    epochs,
    batch_size,
    val_fraction,
    patience,
    seed,
    progress,
):
    """Train the batched ensemble; returns merged (weights, biases, skip, scale, offset, oob)."""
    torch = _torch()
    n, n_in = x.shape
    mean, std = float(y.mean()), float(y.std()) or 1.0
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor((y - mean) / std, dtype=torch.float32)
    k, h = members, hidden
    # Each member's own validation split (bagging-like diversity, and an out-of-bag estimate).
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    val_idx, train_idx = [], []
    for _ in range(k):
        perm = torch.randperm(n, generator=gen)
        val_idx.append(perm[:n_val])
        train_idx.append(perm[n_val:])
    train_idx = torch.stack(train_idx)  # (k, n_train)
    n_train = train_idx.shape[1]

    def init(shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return ((torch.rand(shape, generator=gen) * 2 - 1) * bound).requires_grad_()

    w1, b1 = init((k, n_in, h), n_in), init((k, 1, h), n_in)
    w2, b2 = init((k, h, 1), h), init((k, 1, 1), h)
    ws = init((k, n_in, 1), n_in)
    params = [w1, b1, w2, b2, ws]

    def forward(xb):  # xb: (k, m, n_in) -> (k, m)
        hid = torch.relu(torch.bmm(xb, w1) + b1)
        return (torch.bmm(hid, w2) + b2 + torch.bmm(xb, ws)).squeeze(2)

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    best_loss = torch.full((k,), math.inf)
    best = [p.detach().clone() for p in params]
    since_best = torch.zeros(k, dtype=torch.long)
    xv = torch.stack([xt[v] for v in val_idx]) if n_val else None
    yv = torch.stack([yt[v] for v in val_idx]) if n_val else None
    bar = Progress(epochs, "training", enabled=progress)
    for epoch in range(epochs):
        order = torch.argsort(torch.rand((k, n_train), generator=gen), dim=1)
        epoch_idx = torch.gather(train_idx, 1, order)
        for start in range(0, n_train, batch_size):
            idx = epoch_idx[:, start : start + batch_size]
            opt.zero_grad()
            loss = ((forward(xt[idx]) - yt[idx]) ** 2).mean(dim=1).sum()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            if n_val:
                vloss = ((forward(xv) - yv) ** 2).mean(dim=1)
            else:  # no validation split: keep the last epoch
                vloss = torch.full((k,), -float(epoch))
            better = vloss < best_loss
            best_loss = torch.where(better, vloss, best_loss)
            since_best = torch.where(better, torch.zeros_like(since_best), since_best + 1)
            for b, p in zip(best, params):
                b[better] = p.detach()[better]
        bar.update(1)
        if n_val and bool((since_best > patience).all()):
            break
    bar.close()
    # Out-of-bag: each record scored by the members that held it out.
    oob = None
    if n_val:
        with torch.no_grad():
            for p, b in zip(params, best):
                p.copy_(b)
            member_pred = forward(xt.expand(k, n, n_in)).numpy() * std + mean
        held = np.zeros((k, n), bool)
        for m, v in enumerate(val_idx):
            held[m, v.numpy()] = True
        seen = held.any(0)
        avg = (member_pred * held).sum(0)[seen] / held.sum(0)[seen]
        oob = _metrics(avg, y[seen])
        oob["note"] = "out-of-bag: each record scored by the members that held it out of training"
    w1, b1, w2, b2, ws = (b.numpy().astype(np.float64) for b in best)
    # Merge: mean over members == one net with the hidden units side by side.
    weights = [np.concatenate(list(w1), axis=1), np.concatenate(list(w2), axis=0) / k]
    biases = [np.concatenate([b[0] for b in b1]), np.array([b2.mean()])]
    skip = ws[:, :, 0].mean(0)
    return weights, biases, skip, std, mean, oob


def train_predictor(
    data,
    space: str | Space,
    *,
    hidden: int = DEFAULTS["hidden"],
    members: int = DEFAULTS["members"],
    weight_decay: float = DEFAULTS["weight_decay"],
    lr: float = DEFAULTS["lr"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    val_fraction: float = DEFAULTS["val_fraction"],
    patience: int = DEFAULTS["patience"],
    seed: int = 0,
    threads: int = 1,
    name: str | None = None,
    progress: bool = False,
) -> Predictor:
    """Train a predictor for ``space`` from JSONL path(s) or a list of records.

    Returns a :class:`moofa.Predictor` (top-1 in percent) whose metadata holds the
    recipe, the data and an out-of-bag validation estimate. ``threads`` caps torch's
    threads (1 keeps training bit-for-bit reproducible).
    """
    torch = _torch()
    sp = get_space(space)
    records = data if isinstance(data, list) and data and isinstance(data[0], dict) else read_records(data)
    cfg = dict(
        hidden=_check_int("hidden", hidden, 1),
        members=_check_int("members", members, 1),
        weight_decay=_check_float("weight_decay", weight_decay, 0.0),
        lr=_check_float("lr", lr, 1e-12),
        epochs=_check_int("epochs", epochs, 1),
        batch_size=_check_int("batch_size", batch_size, 1),
        val_fraction=_check_float("val_fraction", val_fraction, 0.0, 0.9),
        patience=_check_int("patience", patience, 0),
        seed=_check_int("seed", seed, 0),
    )
    _check_int("threads", threads, 1)
    x, y = _xy(records, sp)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        weights, biases, skip, scale, offset, oob = _fit(x, y, progress=progress, **cfg)
    finally:
        torch.set_num_threads(old_threads)
    meta = {
        "name": name or sp.name,
        "training": {
            "recipe": "ensemble of 1-hidden-layer MLPs + linear skip, merged into one MLP",
            "optimizer": "AdamW, cosine schedule, MSE on standardised top1, early stopping",
            **cfg,
            "records": len(records),
            "seconds": round(time.perf_counter() - t0, 1),
            "torch": torch.__version__,
        },
        "validation": {"out_of_bag": oob} if oob else {},
    }
    if not isinstance(data, list):
        meta["dataset"] = [Path(p).name for p in ([data] if isinstance(data, (str, os.PathLike)) else data)]
    return Predictor(sp, weights, biases, skip=skip, scale=scale, offset=offset, metadata=meta)


def cross_validate(
    data, space: str | Space, *, folds: int = 5, seed: int = 0, progress: bool = False, **train_kw
) -> dict:
    """k-fold cross-validation of :func:`train_predictor`: RMSE and Kendall tau on each
    held-out fold, their mean and standard deviation."""
    sp = get_space(space)
    records = data if isinstance(data, list) and data and isinstance(data[0], dict) else read_records(data)
    folds = _check_int("folds", folds, 2)
    perm = np.random.default_rng(seed).permutation(len(records))
    per_fold = []
    bar = Progress(folds, "cross-validation", enabled=progress)
    for f in range(folds):
        test = set(perm[f::folds].tolist())
        train = [r for i, r in enumerate(records) if i not in test]
        held = [records[i] for i in sorted(test)]
        pred = train_predictor(train, sp, seed=seed + f, **train_kw)
        per_fold.append(
            _metrics(
                pred.predict([Subnet.from_dict(r) for r in held]).astype(np.float64),
                np.array([r["top1"] for r in held], np.float64),
            )
        )
        bar.update(1)
    bar.close()
    rmse = np.array([m["rmse"] for m in per_fold])
    tau = np.array([m["kendall_tau"] for m in per_fold])
    return {
        "folds": folds,
        "seed": seed,
        "rmse_mean": float(rmse.mean()),
        "rmse_std": float(rmse.std()),
        "kendall_tau_mean": float(tau.mean()),
        "kendall_tau_std": float(tau.std()),
        "per_fold": per_fold,
    }


def train_all(
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    cv_folds: int = 0,
    seed: int = 0,
    progress: bool = True,
    **train_kw,
) -> dict:
    """Train (and optionally cross-validate) the shipped predictors; write ``<name>.npz/.json``."""
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    names = list(names or DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown predictor names {unknown}; known: {list(DATASETS)}")
    summary = {}
    for name in names:
        path = data_dir / f"{DATASETS[name]}.jsonl"
        if not path.is_file() and path.with_suffix(".jsonl.gz").is_file():
            path = path.with_suffix(".jsonl.gz")
        records = read_records(path)
        cv = None
        if cv_folds:
            _log(f"{name}: {cv_folds}-fold cross-validation on {len(records)} records", progress)
            cv = cross_validate(records, SHIPPED[name], folds=cv_folds, seed=seed, **train_kw)
            _log(
                f"{name}: held-out RMSE {cv['rmse_mean']:.3f} +- {cv['rmse_std']:.3f}, "
                f"tau {cv['kendall_tau_mean']:.3f} +- {cv['kendall_tau_std']:.3f}",
                progress,
            )
        pred = train_predictor(records, SHIPPED[name], seed=seed, name=name, progress=progress, **train_kw)
        pred.metadata["dataset"] = [path.name]
        if cv:
            pred.metadata["validation"]["cross_validation"] = cv
        pred.save(out_dir / name)
        summary[name] = pred.metadata["validation"]
        _log(f"{name}: wrote {out_dir / name}.npz/.json", progress)
    return summary


def _log(msg, enabled=True):
    if enabled:
        print(msg, file=sys.stderr, flush=True)


_HELP = {
    "hidden": "hidden units of each ensemble member",
    "members": "ensemble members (merged into one MLP)",
    "weight_decay": "AdamW weight decay",
    "lr": "learning rate",
    "epochs": "most epochs",
    "batch_size": "batch size",
    "val_fraction": "each member's random validation split, for early stopping (0: none)",
    "patience": "early stopping: epochs without a better validation loss",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moofa.predictor_train",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--all", action="store_true", help="train every shipped predictor")
    parser.add_argument(
        "--name", action="append", choices=list(DATASETS), help="train this shipped predictor (repeatable)"
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help="folder of the <set>.jsonl (or .jsonl.gz) accuracy files, e.g. tests/data/accuracy of a clone",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help="output folder for the <name>.npz/.json files, created if needed"
    )
    parser.add_argument("--cv", type=int, default=0, help="also run k-fold cross-validation (k >= 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the training and the folds")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value, help=_HELP[key])
    args = parser.parse_args(argv)
    if not args.all and not args.name:
        parser.error("give --all or --name NAME")
    _torch()  # before the data checks: without torch nothing here can run
    if not Path(args.data).is_dir():
        raise ValueError(
            f"--data: folder {args.data!r} not found (from {os.getcwd()}); "
            "give --data PATH, the folder of the <set>.jsonl accuracy files"
        )
    kw = {k: getattr(args, k) for k in DEFAULTS}
    summary = train_all(
        args.out, args.data, names=None if args.all else args.name, cv_folds=args.cv, seed=args.seed, **kw
    )
    print(
        json.dumps(
            {n: {k: {m: v for m, v in d.items() if m != "per_fold"} for k, d in s.items()} for n, s in summary.items()},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as exc:  # bad options or data: one line, as the moofa CLI prints them
        sys.exit(f"python -m moofa.predictor_train: error: {exc}")
