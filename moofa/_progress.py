"""A progress bar for long jobs: tqdm when installed, else a plain counter on stderr."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0):
        self.enabled, self.total, self.desc, self.n, self._bar = enabled, total, desc, initial, None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self._print()
            else:
                self._bar = tqdm(total=total, desc=desc, initial=initial, leave=False)

    def _print(self) -> None:
        print(f"\r{self.desc}: {self.n}/{self.total}", end="", file=sys.stderr, flush=True)

    def update(self, k: int = 1) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif self.enabled and (self.n == self.total or self.n % max(1, self.total // 50) == 0):
            self._print()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print(file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
