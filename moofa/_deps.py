"""Optional dependencies: one wording for a command that needs one that is missing."""

from __future__ import annotations

import importlib.util
import sys


def missing_torch(command: str) -> bool:
    """True (after saying so on stderr) when PyTorch is not installed for ``moofa COMMAND``."""
    if importlib.util.find_spec("torch") is not None:
        return False
    print(f'moofa {command} needs PyTorch: pip install "moofa[train]"', file=sys.stderr)
    return True
