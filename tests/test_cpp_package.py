"""The C++ package: the core installed with CMake, a program built against it with
``find_package(moofa)`` (examples/cpp), and its search compared with the Python API's.

The C++ program reads the predictor files with its own JSON, ZIP/DEFLATE and SHA-256
readers; Python reads them with json, zipfile, hashlib and NumPy. Same predictor, budget,
seed, population and generations: the same subnet, score, peak, MFLOPs and parameters.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import moofa
from moofa.predictor import one_hot_size

# Builds and installs the core with CMake first (about a minute on two cores).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "moofa" / "predictors"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++", "cl"):
        if name and shutil.which(name):
            return name
    return None


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The core built (Release) and installed into a fresh prefix, and the example built
    against that prefix: built once per session."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("needs cmake on PATH (pip install cmake)")
    if _compiler() is None:
        pytest.skip("needs a C++17 compiler (c++, g++, clang++ or $CXX)")
    tmp = tmp_path_factory.mktemp("cpp-package")
    prefix, core_build, example_build = tmp / "prefix", tmp / "core", tmp / "example"
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    _run(
        [
            cmake,
            "-S",
            str(ROOT),
            "-B",
            str(core_build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DMOOFA_BUILD_PYTHON=OFF",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
        ],
        env=env,
    )
    _run([cmake, "--build", str(core_build), "--config", "Release"], env=env)
    _run([cmake, "--install", str(core_build), "--config", "Release"], env=env)
    # The public headers compile warning-free in a program that asks for warnings.
    flags = [] if sys.platform == "win32" else ["-DCMAKE_CXX_FLAGS=-Wall -Wextra -Wpedantic -Werror"]
    _run(
        [
            cmake,
            "-S",
            str(ROOT / "examples" / "cpp"),
            "-B",
            str(example_build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={prefix}",
            *flags,
        ],
        env=env,
    )
    _run([cmake, "--build", str(example_build), "--config", "Release"], env=env)
    exe = next(p for p in example_build.rglob("search_example*") if p.is_file() and os.access(p, os.X_OK))
    return {"prefix": prefix, "exe": exe}


def _example(installed, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["exe"]), *map(str, args)], capture_output=True, text=True, timeout=300)


def _parse(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines() if line.strip())


def _compare(out: dict[str, str], r: moofa.SearchResult, space) -> None:
    row = moofa.encode([r.subnet], space)[0]
    assert [int(v) for v in out["row"].split()] == row.tolist()
    assert float(out["score"]) == pytest.approx(r.top1, rel=1e-6)
    assert int(out["peak"]) == r.peak
    assert float(out["mflops"]) == pytest.approx(r.mflops, rel=1e-12)
    assert int(out["params"]) == r.params
    assert int(out["evaluations"]) == r.evaluations


SEARCHES = [
    # predictor, space, memory model, budget (None: twice the space's smallest peak), seed
    ("moofa", "moofa", "full", 325_000, 3),
    ("ofa", "ofa", "activations", None, 1),
    ("compofa", "compofa", "full", 400_000, 7),
    ("moofa-imagenette", "moofa", "tflm", None, 11),
    ("moofa-e346", "moofa-e346", "full", 500_000, 0),
]


@pytest.mark.parametrize(("predictor", "space", "model", "budget", "seed"), SEARCHES)
def test_example_finds_what_python_finds(installed, predictor, space, model, budget, seed):
    if budget is None:
        budget = 2 * moofa.min_peak(space, memory_model=model)[0]
    population, generations = 64, 20
    proc = _example(
        installed,
        predictor,
        budget,
        "--seed",
        seed,
        "--population",
        population,
        "--generations",
        generations,
        "--memory-model",
        model,
    )
    assert proc.returncode == 0, proc.stderr
    out = _parse(proc.stdout)
    assert out["predictor"] == predictor and out["space"] == space and int(out["budget"]) == budget
    options = {"bytes_per_item": 1} if model == "tflm" else {}
    r = moofa.search(
        budget,
        space,
        predictor=predictor,
        seed=seed,
        population=population,
        generations=generations,
        memory_model=model,
        **options,
    )
    assert r.peak <= budget
    _compare(out, r, space)


def _random_predictor(path: Path, space: str, seed: int) -> moofa.Predictor:
    rng = np.random.default_rng(seed)
    n = one_hot_size(space)
    weights = [rng.normal(0, 0.2, size=(n, 24)), rng.normal(0, 0.2, size=(24, 8)), rng.normal(0, 0.2, size=(8, 1))]
    biases = [rng.normal(0, 0.2, size=w.shape[1]) for w in weights]
    # Outputs near 70 (top-1 percent: outside [0, 100] the Python API warns).
    p = moofa.Predictor(space, weights, biases, skip=rng.normal(0, 0.2, size=n), scale=2.5, offset=70.0)
    p.save(path)
    return p


def test_example_reads_a_saved_predictor(installed, tmp_path):
    """A predictor written by moofa.Predictor.save (three layers and a skip): same search."""
    _random_predictor(tmp_path / "mine", "ofa", 0)
    proc = _example(installed, tmp_path / "mine.json", 450_000, "--seed", 5, "--population", 50, "--generations", 10)
    assert proc.returncode == 0, proc.stderr
    loaded = moofa.load_predictor(tmp_path / "mine.json")
    # The example runs one plain evolution: no islands, dive or climb (the defaults for deep MLPs).
    plain = dict(islands=1, dive_nodes=0, climb_evaluations=0)
    r = moofa.search(450_000, "ofa", predictor=loaded, seed=5, population=50, generations=10, **plain)
    _compare(_parse(proc.stdout), r, "ofa")


def test_example_reads_stored_float64_fortran_arrays(installed, tmp_path):
    """Arrays NumPy stores uncompressed, as float64 in Fortran order (np.savez): read as
    Python's loader reads them."""
    _random_predictor(tmp_path / "mine", "compofa", 1)
    with np.load(tmp_path / "mine.npz") as z:
        arrays = {k: np.asfortranarray(z[k].astype(np.float64)) for k in z.files}
    np.savez(tmp_path / "mine.npz", **arrays)
    with zipfile.ZipFile(tmp_path / "mine.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        with zf.open("w0.npy") as f:
            np.lib.format.read_magic(f)
            assert np.lib.format.read_array_header_1_0(f)[1:] == (True, np.dtype("<f8"))
    doc = json.loads((tmp_path / "mine.json").read_text())
    doc["weights_sha256"] = hashlib.sha256((tmp_path / "mine.npz").read_bytes()).hexdigest()
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    proc = _example(installed, tmp_path / "mine.json", 300_000, "--seed", 2, "--population", 40, "--generations", 8)
    assert proc.returncode == 0, proc.stderr
    loaded = moofa.load_predictor(tmp_path / "mine.json")
    plain = dict(islands=1, dive_nodes=0, climb_evaluations=0)
    r = moofa.search(300_000, "compofa", predictor=loaded, seed=2, population=40, generations=8, **plain)
    _compare(_parse(proc.stdout), r, "compofa")


def _copy_shipped(tmp_path: Path, name: str) -> Path:
    for suffix in (".json", ".npz"):
        shutil.copy(SHIPPED / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path / f"{name}.json"


def test_changed_weights_fail_the_sha256_check(installed, tmp_path):
    json_path = _copy_shipped(tmp_path, "moofa")
    npz = tmp_path / "moofa.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    npz.write_bytes(bytes(raw))
    proc = _example(installed, json_path, 325_000)
    assert proc.returncode == 1
    assert "SHA-256 differs" in proc.stderr and str(npz) in proc.stderr
    with pytest.raises(ValueError, match="SHA-256 differs"):
        moofa.load_predictor(json_path)


def test_corrupt_deflate_data_is_refused(installed, tmp_path):
    """Without the SHA-256 in the JSON, a damaged member fails the DEFLATE decoder or the
    member's CRC-32, as Python's zipfile refuses it."""
    json_path = _copy_shipped(tmp_path, "ofa")
    doc = json.loads(json_path.read_text())
    del doc["weights_sha256"]
    json_path.write_text(json.dumps(doc))
    npz = tmp_path / "ofa.npz"
    raw = bytearray(npz.read_bytes())
    for offset in (2000, 50_000, 150_000):  # inside w0's compressed data
        raw[offset] ^= 0x5A
    npz.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        moofa.load_predictor(json_path)
    proc = _example(installed, json_path, 325_000)
    assert proc.returncode == 1
    assert "w0" in proc.stderr and ("corrupt" in proc.stderr or "CRC-32" in proc.stderr), proc.stderr


def test_unknown_space_key_is_named(installed, tmp_path):
    json_path = _copy_shipped(tmp_path, "moofa")
    doc = json.loads(json_path.read_text())
    doc["space"]["definition"]["stages"][1]["widht"] = 8
    json_path.write_text(json.dumps(doc))
    proc = _example(installed, json_path, 325_000)
    assert proc.returncode == 1
    assert "'stages'[1]: unknown key 'widht'" in proc.stderr


def test_package_version_is_the_python_version(installed):
    (version_file,) = installed["prefix"].glob("lib*/cmake/moofa/moofaConfigVersion.cmake")
    text = version_file.read_text()
    assert f'set(PACKAGE_VERSION "{importlib.metadata.version("moofa")}")' in text
    headers = {p.name for p in (installed["prefix"] / "include" / "moofa").iterdir()}
    assert {"search.hpp", "predictor.hpp", "memory.hpp", "predictor_io.hpp", "space_io.hpp"} <= headers


def test_damaged_archives_fail_cleanly(installed, tmp_path):
    """Truncated or bit-flipped archives (no SHA-256 to catch them first): the C++ reader
    either refuses them with a message or, where only a field it does not use was hit,
    finds exactly what the intact file gives. It never crashes."""
    json_path = _copy_shipped(tmp_path, "compofa")
    doc = json.loads(json_path.read_text())
    del doc["weights_sha256"]
    json_path.write_text(json.dumps(doc))
    npz = tmp_path / "compofa.npz"
    intact = npz.read_bytes()
    args = (json_path, 400_000, "--population", 20, "--generations", 3)
    good = _example(installed, *args)
    assert good.returncode == 0, good.stderr
    n = len(intact)
    rng = np.random.default_rng(0)
    damaged = [intact[:cut] for cut in (0, 10, 21, 22, 100, n // 2, n - 23, n - 22, n - 1)]
    # Flips in the headers and directory at both ends, and anywhere.
    positions = [*range(0, 70, 3), *range(n - 200, n, 5), *rng.integers(0, n, 20).tolist()]
    for pos in positions:
        raw = bytearray(intact)
        raw[pos] ^= int(rng.integers(1, 256))
        damaged.append(bytes(raw))
    refused = 0
    for data in damaged:
        npz.write_bytes(data)
        proc = _example(installed, *args)
        assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)
        if proc.returncode == 0:
            assert proc.stdout == good.stdout
        else:
            assert str(npz) in proc.stderr, proc.stderr
            refused += 1
    assert refused >= len(damaged) // 2


def test_truncated_json_is_refused(installed, tmp_path):
    json_path = _copy_shipped(tmp_path, "moofa")
    text = json_path.read_text()
    for cut in (0, 1, 50, len(text) // 2, len(text) - 3):
        json_path.write_text(text[:cut])
        proc = _example(installed, json_path, 325_000)
        assert proc.returncode == 1
        assert f"{json_path}: not valid JSON" in proc.stderr, proc.stderr
