"""Progress bars for long sweeps: tqdm when installed, else a small bar on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "searching") as bar: bar.update(1, best=...)``.

    ``enabled=None`` shows the bar only when stderr is a terminal.
    """

    def __init__(self, total: int, desc: str, enabled: bool | None = None, stream=None, initial: int = 0):
        self.total = int(total)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = bool(enabled)
        self.done = int(initial)  # work already done (a resumed job)
        self._tqdm = None
        self._start = time.perf_counter()
        self._postfix = ""
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None and stream is None:
                self._tqdm = tqdm(total=self.total, desc=desc, file=self.stream, initial=self.done)
            else:
                self._draw()

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._tqdm is not None:
            if postfix:
                self._tqdm.set_postfix(postfix, refresh=False)
            self._tqdm.update(n)
            return
        self._postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        self._draw()

    def _draw(self) -> None:
        width = 30
        filled = width * self.done // self.total if self.total else width
        elapsed = time.perf_counter() - self._start
        bar = "#" * filled + "." * (width - filled)
        line = f"\r{self.desc} [{bar}] {self.done}/{self.total} {elapsed:.1f}s"
        if self._postfix:
            line += " " + self._postfix
        self.stream.write(line)
        self.stream.flush()

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
