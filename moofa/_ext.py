"""Import of the compiled core with an actionable message when it is missing."""

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "moofa._core (the C++ extension) could not be imported: did you build it? "
        "Install moofa with `pip install .` (or, for development, "
        "`pip install --no-build-isolation -Cbuild-dir=build -e .`). "
        f"Original error: {exc}"
    ) from exc

core = _core
