"""Shared test fixtures: where the published ground-truth data lives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# ../shared beside the repository (CI puts it there); MOOFA_SHARED overrides.
SHARED = Path(os.environ.get("MOOFA_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"

BUILTIN_SPACES = ["ofa", "compofa", "moofa", "moofa-e346", "moofa-e1-2"]
# accuracy file -> space it was sampled from
ACCURACY_SETS = {
    "ofa-imagenet": "ofa",
    "compofa-imagenet": "compofa",
    "moofa-imagenet": "moofa",
    "moofa-imagenette": "moofa",
    "moofa-e346-imagenette": "moofa-e346",
    "moofa-e1-2-imagenette": "moofa-e1-2",
}


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"ground-truth data not found at {DATA}; set MOOFA_SHARED to the shared/ folder")
    return SHARED


@pytest.fixture
def ctrl_c():
    """Python's own SIGINT handler, as in an interactive session.

    A process started in the background by a non-interactive shell (as CI may be)
    inherits SIGINT ignored, and then Python never raises KeyboardInterrupt: tests that
    press Ctrl-C (``_thread.interrupt_main``) install the default handler for their run.
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
