"""Every ``moofa.name.name`` path and ``from moofa... import`` line in README.md and docs/ resolves."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import moofa

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_DOTTED = re.compile(r"\bmoofa((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_FROM = re.compile(r"^\s*from (moofa(?:\.[A-Za-z_][A-Za-z0-9_]*)*) import ([A-Za-z_][A-Za-z0-9_, ]*)", re.M)
# Extras that a documented path may need; without them, that path is skipped.
_OPTIONAL = {"torch", "torchvision", "tqdm", "PIL", "sklearn", "matplotlib", "onnx"}


def _documented() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for doc in DOCS:
        text = doc.read_text()
        for m in _DOTTED.finditer(text):
            found.setdefault("moofa" + m.group(1), doc.name)
        for m in _FROM.finditer(text):
            for name in m.group(2).split(","):
                found.setdefault(f"{m.group(1)}.{name.strip()}", doc.name)
    return sorted(found.items())


def _resolve(path: str):
    obj = moofa
    for part in path.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def test_docs_mention_paths():
    paths = dict(_documented())
    # The ones that once failed: submodules moofa/__init__ did not import, names the search function hid.
    for path in ("moofa.dataset.build_dataset", "moofa.report.format_result", "moofa.sweep", "moofa.linear_scorer"):
        assert path in paths


@pytest.mark.parametrize(("path", "doc"), _documented())
def test_documented_path_resolves(path, doc):
    try:
        _resolve(path)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in _OPTIONAL:
            pytest.skip(f"{path} needs {exc.name}")
        raise
    except AttributeError as exc:
        pytest.fail(f"{doc} mentions {path}, which does not resolve: {exc}")


def test_search_function_carries_the_search_module_names():
    module = importlib.import_module("moofa.search")
    assert callable(moofa.search)
    for name in set(module.__all__) - {"search"}:
        assert getattr(moofa.search, name) is getattr(module, name)
    assert moofa.search.sweep is moofa.sweep and moofa.search.linear_scorer is moofa.linear_scorer


def test_import_moofa_needs_neither_torch_nor_matplotlib():
    code = (
        "import sys, moofa; moofa.report.format_result; moofa.dataset.build_dataset; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_module'"):
        moofa.not_a_module  # noqa: B018
