"""Importing moofa from an unbuilt source tree says so, and where the installed moofa is."""

from __future__ import annotations

import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import moofa

PACKAGE = Path(moofa.__file__).resolve().parent


def _copy_sources(dest: Path) -> Path:
    """The package's Python files, without any compiled extension."""
    shutil.copytree(PACKAGE, dest / "moofa", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return dest / "moofa"


def _import_moofa(cwd: Path, extra_path: list[Path]) -> subprocess.CompletedProcess:
    # -S: no .pth files, so no editable-install finder redirects the import; the current
    # directory comes first on sys.path, as for `python` started in a clone.
    paths = [*map(str, extra_path), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(
        [sys.executable, "-S", "-c", "import moofa"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_source_tree_without_extension_names_both_places(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    source = _copy_sources(clone)
    (clone / "pyproject.toml").write_text("[project]\nname = 'moofa'\n")
    (clone / "csrc").mkdir()
    # An installed moofa elsewhere on the path, with its (stand-in) compiled core.
    site = tmp_path / "site"
    (site / "moofa").mkdir(parents=True)
    (site / "moofa" / "__init__.py").write_text("")
    (site / "moofa" / f"_core{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")

    out = _import_moofa(clone, [site])
    assert out.returncode != 0
    message = out.stderr.strip().splitlines()[-1]
    assert f"you are importing moofa from the source tree at {source}, which has no built extension" in message
    m = re.search(r"an installed moofa is at (.+?): run Python outside the source tree", message)
    assert m is not None, message
    installed = Path(m.group(1))
    assert installed != source and any(installed.glob("_core*"))
    assert "pip install --no-build-isolation -e ." in message
    assert "did you build it" not in message


def test_plain_copy_without_extension_keeps_the_build_hint(tmp_path):
    _copy_sources(tmp_path)  # no pyproject.toml or csrc/: not a source tree
    out = _import_moofa(tmp_path, [])
    assert out.returncode != 0
    assert "did you build it?" in out.stderr and "source tree" not in out.stderr
