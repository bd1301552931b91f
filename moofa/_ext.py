"""Import of the compiled core with an actionable message when it is missing."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path


def _has_core(package_dir: Path) -> bool:
    return any((package_dir / f"_core{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _is_source_tree(package_dir: Path) -> bool:
    """A clone of the repository: the package beside ``pyproject.toml`` and the C++ sources."""
    root = package_dir.parent
    return (root / "pyproject.toml").is_file() and (root / "csrc").is_dir()


def _installed_elsewhere(package_dir: Path) -> Path | None:
    """Where an installed moofa with a built core lives, other than ``package_dir``."""
    here = package_dir.resolve()
    candidates: list[Path] = []
    try:
        from importlib import metadata

        dist = metadata.distribution("moofa")
        for f in dist.files or []:
            if f.parts[:1] == ("moofa",) and f.name.startswith("_core."):
                candidates.append(Path(str(dist.locate_file(f))).parent)
    except Exception:  # no metadata, or a broken one: fall back to the path scan
        pass
    for entry in sys.path:
        candidates.append(Path(entry or ".") / "moofa")
    for cand in candidates:
        try:
            if cand.resolve() != here and _has_core(cand):
                return cand.resolve()
        except OSError:
            continue
    return None


def _missing_core_message(exc: ImportError) -> str:
    package_dir = Path(__file__).resolve().parent
    if _is_source_tree(package_dir) and not _has_core(package_dir):
        installed = _installed_elsewhere(package_dir)
        if installed is not None:
            return (
                f"you are importing moofa from the source tree at {package_dir}, which has no built "
                f"extension; an installed moofa is at {installed}: run Python outside the source tree, "
                "or build in place with pip install --no-build-isolation -e ."
            )
        return (
            f"you are importing moofa from the source tree at {package_dir}, which has no built "
            "extension: install it with pip install . and run Python outside the source tree, "
            "or build in place with pip install --no-build-isolation -e ."
        )
    return (
        "moofa._core (the C++ extension) could not be imported: did you build it? "
        "Install moofa with `pip install .` (or, for development, "
        "`pip install --no-build-isolation -Cbuild-dir=build -e .`). "
        f"Original error: {exc}"
    )


try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(_missing_core_message(exc)) from exc

core = _core
