"""The command line without its optional dependencies, and with a closed stdout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Runs `moofa ARGS` in a fresh interpreter in which the named top-level modules cannot be imported.
_BLOCKED_MAIN = textwrap.dedent(
    """
    import sys

    blocked = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for mod in list(sys.modules):
        if mod.split(".")[0] in blocked:
            del sys.modules[mod]
    from moofa.cli import main

    sys.exit(main(sys.argv[2:]))
    """
)


def _moofa_without(blocked: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED_MAIN, blocked, *args], capture_output=True, text=True, timeout=600, **kw
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipeline", "--workdir", "{tmp}"], 'moofa pipeline needs PyTorch: pip install "moofa[train]"'),
        (["train", "digits-tiny", "--workdir", "{tmp}"], 'moofa train needs PyTorch: pip install "moofa[train]"'),
        (["train-predictor", "--all"], 'moofa train-predictor needs PyTorch: pip install "moofa[torch]"'),
    ],
)
def test_torch_commands_without_torch(tmp_path, args, message):
    out = _moofa_without("torch", *[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == message
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["search", "--generations", "1"], ["pareto", "--generations", "1"]])
def test_plot_without_matplotlib_fails_before_searching(tmp_path, command):
    target = tmp_path / "fig.png"
    out = _moofa_without("matplotlib", *command, "--plot", str(target))
    assert out.returncode == 2
    assert out.stderr.strip() == f'moofa {command[0]} needs matplotlib: pip install "moofa[plot]"'
    assert out.stdout == ""  # nothing was searched or printed
    assert not target.exists()


def test_blocked_module_is_really_missing():
    # The blocker itself works: without it, the same run would succeed.
    out = _moofa_without("numpy", "spaces")
    assert out.returncode != 0 and "numpy" in out.stderr


def test_closed_stdout_exits_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before moofa writes a byte
    try:
        out = subprocess.run(
            [sys.executable, "-m", "moofa", "spaces", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    finally:
        os.close(write_end)
    assert out.returncode == 1
    assert out.stderr == ""


def test_delegated_command_errors_are_one_line(tmp_path, capsys):
    from moofa.cli import main

    missing = tmp_path / "absent.jsonl"
    code = main(["train-predictor", "--data", str(missing), "--name", "moofa", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("moofa train-predictor: error: ") and "Traceback" not in err
