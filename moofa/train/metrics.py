"""The run's metric records: ``metrics.jsonl`` (one JSON object a line) and ``metrics.csv``."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .._io import atomic_write_text

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


def records_up_to(path, global_step: int) -> tuple[list[dict], int]:
    """The JSON-lines records of ``path`` up to ``global_step`` (what a resumed run keeps) and
    how many lines were dropped: later records, which the run writes again, and lines torn by
    the interruption."""
    keep, dropped = [], 0
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line torn by the interruption
            dropped += 1
            continue
        if isinstance(rec, dict) and rec.get("global_step", 0) <= global_step:
            keep.append(rec)
        else:
            dropped += 1
    return keep, dropped


class Metrics:
    """Appends records to metrics.jsonl and metrics.csv (rank 0 only: ``enabled``)."""

    def __init__(self, workdir: Path, enabled: bool):
        self.jsonl, self.csv, self.enabled = workdir / METRICS_JSONL, workdir / METRICS_CSV, enabled

    def start_fresh(self) -> list[str]:
        """A fresh run: metrics left by an earlier run in this workdir (killed before its first
        checkpoint) are moved aside to ``*.old`` (replacing older ones). Returns the new names."""
        moved = []
        if self.enabled:
            for path in (self.jsonl, self.csv):
                if path.exists():
                    old = path.with_name(path.name + ".old")
                    os.replace(path, old)
                    moved.append(str(old))
        return moved

    def truncate_after(self, global_step: int) -> int:
        """On resume: drop records past the checkpoint's step, which the run will write again
        (and lines torn by the interruption). Returns how many records were dropped."""
        if not self.enabled or not self.jsonl.is_file():
            return 0
        keep, dropped = records_up_to(self.jsonl, global_step)
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in keep))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(self.csv, buf.getvalue())
        return dropped

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
