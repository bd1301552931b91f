"""Shared test fixtures: the published ground-truth data.

The published records (memory profiles and accuracy sets) are vendored under
``tests/data`` (see its README), so the suite runs from a plain clone. Only the
published ``.pth.tar`` checkpoints live outside the repository, in ``../shared``
(``MOOFA_SHARED`` overrides); tests that need them skip when it is absent.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

# ../shared beside the repository (CI puts it there); MOOFA_SHARED overrides.
SHARED = Path(os.environ.get("MOOFA_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
# The vendored copy of the published records: <kind>/<name>.jsonl.gz, kind = profiles | accuracy.
FIXTURES = Path(__file__).resolve().parent / "data"

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
    """Records of a JSONL file, gzip-compressed or not (by the ``.gz`` suffix)."""
    with gzip.open(path, "rt") if Path(path).suffix == ".gz" else open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_fixture(kind: str, name: str) -> list[dict]:
    """The vendored published records ``tests/data/<kind>/<name>.jsonl.gz``
    (``read_fixture("profiles", "ofa")``, ``read_fixture("accuracy", "ofa-imagenet")``)."""
    path = FIXTURES / kind / f"{name}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"no vendored fixture {path}; regenerate with tests/data/make_fixtures.py")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``MOOFA_SHARED``), for the published checkpoints; skips when absent."""
    if not SHARED.is_dir():
        pytest.skip("needs ../shared (published .pth.tar checkpoints); set MOOFA_SHARED")
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


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_source_tree(tmp_path_factory):
    """Work from a folder outside the checkout.

    ``python -c`` puts its working folder first on ``sys.path``; started from the clone's
    root, a test's subprocess would import the source tree (no built extension) instead of
    the installed moofa.
    """
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: batch-1 forwards of small nets only gain contention
    from more threads on a 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
