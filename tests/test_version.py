"""One version: pyproject.toml's, seen alike by the package metadata, the Python
package and the compiled core."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re

import moofa
from moofa import _core


def test_one_version_everywhere():
    assert moofa.__version__ == _core.__version__ == importlib.metadata.version("moofa")


def test_the_version_is_pyprojects():
    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.exists():  # installed tests without the source tree
        return
    declared = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
    assert declared is not None and declared.group(1) == _core.__version__
