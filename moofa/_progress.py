"""Progress bars for long jobs (sweeps, training, dataset building): tqdm when installed,
else a small bar on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "searching") as bar: bar.update(1, best=...)``.

    ``enabled=None`` shows the bar only when the stream is a terminal; ``initial`` is the
    work already done (resumed jobs). The plain bar redraws at most ten times a second.
    """

    def __init__(self, total: int, desc: str, enabled: bool | None = None, initial: int = 0, stream=None):
        self.total = int(total)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = bool(enabled)
        self.done = self.n = int(initial)
        self._tqdm = None
        self._start = time.perf_counter()
        self._drawn = 0.0
        self._postfix = ""
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None and stream is None:
                self._tqdm = tqdm(total=self.total, desc=desc, initial=self.done, leave=True, file=self.stream)
            else:
                self._draw()

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        self.n = self.done
        if not self.enabled:
            return
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(n)
            return
        self._postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        if self.done >= self.total or time.perf_counter() - self._drawn >= 0.1:
            self._draw()

    def _draw(self) -> None:
        width = 30
        filled = min(width, width * self.done // self.total) if self.total else width
        elapsed = time.perf_counter() - self._start
        bar = "#" * filled + "." * (width - filled)
        line = f"\r{self.desc} [{bar}] {self.done}/{self.total} {elapsed:.1f}s"
        if self._postfix:
            line += " " + self._postfix
        self.stream.write(line)
        self.stream.flush()
        self._drawn = time.perf_counter()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
