"""The accuracy predictor co-trained during progressive shrinking (the MOOFA paper's second
line of future work): the subnets sampled for training are measured now and then, and the
predictor is refit from those records at the end of every phase.

Every ``cotrain_every`` steps, rank 0 picks ``cotrain_subnets`` of the subnets trained since
the last measurement (at the resolution of the batch they were trained on), those whose
peak-memory bin holds the fewest records of the phase first and none measured before in the
phase, extracts each, recalibrates its BatchNorm on ``calib_batches`` fixed training batches
and measures its top-1 on the validation split (``val_batches`` caps it; the batches are
decoded once and kept when capped or when the split holds at most 20,000 images). Each record (the
format of :func:`moofa.dataset.build_dataset` plus ``phase`` and ``global_step``) is appended,
synced, to ``cotrain.jsonl``; on resume the records past the checkpoint's step are cut, and
the candidates still waiting are in the checkpoint, so a resumed run writes the same records.
At a phase's end the predictor is trained (:func:`moofa.predictor_train.train_predictor`) on
the phase's records (``cotrain_history = "all"``: every phase's) with every peak-memory bin
oversampled to the fullest one's count (:func:`moofa.predictor_train.balance_by_bin`), and
written as ``predictor-<phase>.npz/.json`` and ``predictor.npz/.json``.

The measurements draw no random number from the training's streams (every step reseeds
them) and leave the supernet's weights and buffers as they are, so the trained supernet is
the same bit for bit with and without co-training.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from .metrics import records_up_to

__all__ = ["COTRAIN_JSONL", "PREDICTOR", "CoTrainer"]

COTRAIN_JSONL = "cotrain.jsonl"
PREDICTOR = "predictor"
MIN_RECORDS = 10  # fewer records than this at a phase's end: no predictor for the phase
CACHE_VAL_IMAGES = 20_000  # a validation split up to this size is kept decoded between measurements


class CoTrainer:
    """Candidates, measurements and predictor refits of one run (measurements on rank 0)."""

    def __init__(self, cfg, space, workdir: Path, is_main: bool, resolutions: list):
        from ..dataset import bin_edges
        from ..memory import evaluator

        self.cfg, self.space, self.workdir, self.is_main = cfg, space, workdir, is_main
        self.path = workdir / COTRAIN_JSONL
        self.edges = bin_edges(space, cfg.cotrain_bins)
        self.peaks = evaluator(space, "full")
        self.resolutions = resolutions
        self.pool: list[dict] = []  # subnets trained since the last measurement
        self.eval_seconds = 0.0
        self._calib: dict[int, list] = {}
        self._val: dict[int, Any] = {}

    # --- the run's files ---------------------------------------------------------------
    def start_fresh(self) -> str | None:
        """A fresh run: records of an earlier run in this workdir are moved aside to ``.old``."""
        if self.is_main and self.path.exists():
            old = self.path.with_name(self.path.name + ".old")
            os.replace(self.path, old)
            return str(old)
        return None

    def truncate_after(self, global_step: int) -> int:
        """On resume: keep the records up to the checkpoint's step; returns how many were cut."""
        if not self.is_main or not self.path.is_file():
            return 0
        keep, dropped = records_up_to(self.path, global_step)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        return dropped

    def records(self, phase: str | None = None) -> list[dict]:
        if not self.path.is_file():
            return []
        recs = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in recs if phase is None or r["phase"] == phase]

    # --- during a phase ----------------------------------------------------------------
    def sampled(self, net, resolution: int) -> None:
        """A subnet was just trained on a batch at ``resolution``."""
        self.pool.append(net.to_dict() | {"image_size": int(resolution)})

    def state(self) -> dict:
        """What a checkpoint keeps to resume the selection exactly."""
        return {"pool": [dict(c) for c in self.pool]}

    def restore(self, state: dict | None) -> None:
        self.pool = [dict(c) for c in (state or {}).get("pool", [])]

    def _bins(self, configs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        from ..dataset import _bin_of
        from ..subnet import Subnet, encode

        rows = encode([Subnet.from_dict(c) for c in configs], self.space)
        peaks = self.peaks.peaks(rows, 1)
        return peaks, _bin_of(peaks.astype(np.float64), self.edges)

    def measure(self, run, phase: str, global_step: int) -> int:
        """Measure the chosen candidates (rank 0) and append their records; empties the pool.
        Returns how many subnets were measured."""
        pool, self.pool = self.pool, []
        if not self.is_main or not pool:
            return 0
        from ..dataset import _config_key, append_record

        t0 = time.perf_counter()
        done = self.records(phase)
        seen = {_config_key(r, self.space) for r in done}
        counts = np.bincount([r["bin"] for r in done], minlength=len(self.edges) - 1)
        peaks, bins = self._bins(pool)
        chosen = []
        for _ in range(self.cfg.cotrain_subnets):
            best = None
            for i, c in enumerate(pool):
                k = _config_key(c, self.space)
                if k in seen or bins[i] < 0:
                    continue
                if best is None or counts[bins[i]] < counts[bins[best]]:
                    best = i  # the emptiest bin; among equals, the earliest trained
            if best is None:
                break
            seen.add(_config_key(pool[best], self.space))
            counts[bins[best]] += 1
            chosen.append(best)
        with open(self.path, "a") as f:
            for i in chosen:
                top1 = self._top1(run, pool[i])
                rec = {
                    **pool[i],
                    "top1": top1,
                    "peak_memory": int(peaks[i]),
                    "bin": int(bins[i]),
                    "phase": phase,
                    "global_step": int(global_step),
                }
                append_record(f, rec)
        self.eval_seconds += time.perf_counter() - t0
        return len(chosen)

    def _top1(self, run, config: dict) -> float:
        from ..data import calibration_batches, make_loader
        from ..subnet import Subnet
        from .loop import evaluate

        cfg, model, dev = run.cfg, run.model, run.dev
        net = Subnet.from_dict(config)
        res = net.image_size
        if res not in self._calib:
            self._calib[res] = calibration_batches(
                run.train_set, cfg.calib_batches, cfg.batch_size, res, seed=cfg.seed + 2, scale=cfg.crop_scale
            )
            val: Any = make_loader(run.val_set, cfg.val_batch_size, [res], train=False, workers=cfg.workers)
            if cfg.val_batches is not None or len(run.val_set) <= CACHE_VAL_IMAGES:  # decoded once, kept
                val = [b for _, b in zip(range(cfg.val_batches or len(val)), val)]
            self._val[res] = val
        active, was_training = model.active, model.training
        sub = model.recalibrated(net, [b.to(dev) for b in self._calib[res]])
        model.set_active_subnet(active)
        model.train(was_training)
        return float(evaluate(sub, self._val[res], dev, cfg.val_batches))

    # --- at a phase's end --------------------------------------------------------------
    def refit(self, phase: str) -> dict | None:
        """Train the predictor on the records (balanced by bin) and save it; rank 0."""
        if not self.is_main:
            return None
        from ..predictor_train import balance_by_bin, train_predictor

        recs = self.records(None if self.cfg.cotrain_history == "all" else phase)
        if len(recs) < MIN_RECORDS:
            return None
        t0 = time.perf_counter()
        balanced = balance_by_bin(recs, seed=self.cfg.seed)
        pred = train_predictor(
            balanced,
            self.space,
            epochs=self.cfg.cotrain_predictor_epochs,
            seed=self.cfg.seed,
            name=f"{self.space.name}-cotrained-{phase}",
        )
        pred.metadata["cotrain"] = {
            "phase": phase,
            "history": self.cfg.cotrain_history,
            "records": len(recs),
            "balanced_records": len(balanced),
            "per_bin": np.bincount([r["bin"] for r in recs], minlength=len(self.edges) - 1).tolist(),
            "edges": self.edges.tolist(),
        }
        pred.save(self.workdir / f"{PREDICTOR}-{phase}")
        pred.save(self.workdir / PREDICTOR)
        return {
            "records": len(recs),
            "per_bin": pred.metadata["cotrain"]["per_bin"],
            "predictor_seconds": round(time.perf_counter() - t0, 3),
        }
