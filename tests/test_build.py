"""The compiled core exports its module init function and nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from moofa import _core


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None, reason="needs Linux and nm")
def test_core_exports_only_its_init_function():
    out = subprocess.run(["nm", "-D", "--defined-only", _core.__file__], capture_output=True, text=True, check=True)
    symbols = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert symbols == ["PyInit__core"]
