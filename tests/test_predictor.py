"""moofa.Predictor / load_predictor: published checkpoints against a torch forward
pass, the .npz + .json format, and clear errors on bad files."""

from __future__ import annotations

import io
import json
import shutil
import warnings
import zipfile

import numpy as np
import pytest
from conftest import read_fixture

import moofa
from moofa.predictor import one_hot, one_hot_size

PUBLISHED = ["ofa", "compofa", "moofa"]


def reference_one_hot(configs, space):
    """REFERENCE.md's 124-dim encoding, built from the OFA-style dicts themselves."""
    sp = moofa.get_space(space)
    n_k, n_e, n_slots = len(sp.kernels), len(sp.expands), sp.n_slots
    out = np.zeros((len(configs), len(sp.resolutions) + n_slots * (n_k + n_e)), np.float32)
    for i, c in enumerate(configs):
        c = c.to_dict() if isinstance(c, moofa.Subnet) else c
        out[i, sp.resolutions.index(c["image_size"])] = 1
        slot = 0
        for stage, depth in zip(sp.stages, c["d"]):
            for p in range(stage.max_depth):
                if p < depth:
                    out[i, len(sp.resolutions) + slot * n_k + sp.kernels.index(c["ks"][slot])] = 1
                    e = sp.expands.index(c["e"][slot])
                    out[i, len(sp.resolutions) + n_slots * n_k + slot * n_e + e] = 1
                slot += 1
    return out


def test_one_hot_is_the_published_encoding():
    for name, space in [
        ("ofa-imagenet", "ofa"),
        ("compofa-imagenet", "compofa"),
        ("moofa-e1-2-imagenette", "moofa-e1-2"),
    ]:
        recs = read_fixture("accuracy", name)[:300]
        x = one_hot(recs, space)
        assert x.shape == (300, 124) and x.dtype == np.float32
        np.testing.assert_array_equal(x, reference_one_hot(recs, space))
        assert one_hot_size(space) == 124


def torch_published(path):
    """The published AccuracyPredictor rebuilt in torch straight from its state dict."""
    torch = pytest.importorskip("torch")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    layers = []
    i = 0
    while f"layers.{i}.0.weight" in sd:
        w, b = sd[f"layers.{i}.0.weight"], sd[f"layers.{i}.0.bias"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data.copy_(w)
        lin.bias.data.copy_(b)
        layers += [lin, torch.nn.ReLU()]
        i += 1
    last = torch.nn.Linear(sd[f"layers.{i}.weight"].shape[1], 1, bias=False)
    last.weight.data.copy_(sd[f"layers.{i}.weight"])
    net = torch.nn.Sequential(*layers, last).eval()
    return lambda x: ((net(torch.as_tensor(x)).squeeze(1) + sd["base_acc"]) * 100).detach().numpy()


def published_layout_checkpoint(path, hidden=(400, 400, 400), seed=0, base_acc=0.7):
    """A checkpoint laid out as the published OFA accuracy predictor (torch's random init):
    ``layers.<i>`` = Linear + ReLU per hidden layer, a bias-free output Linear, ``base_acc``."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    sizes = [124, *hidden]
    net = torch.nn.Module()
    hidden_layers = [torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU()) for a, b in zip(sizes, sizes[1:])]
    net.layers = torch.nn.Sequential(*hidden_layers, torch.nn.Linear(sizes[-1], 1, bias=False))
    net.register_buffer("base_acc", torch.tensor([base_acc]))
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("space", PUBLISHED)
def test_checkpoint_in_the_published_layout_matches_torch(tmp_path, space):
    path = published_layout_checkpoint(tmp_path / f"{space}.pth.tar", seed=len(space))
    forward = torch_published(path)
    pred = moofa.load_predictor(path)
    assert pred.space.name == space and pred.layer_sizes == [124, 400, 400, 400, 1]
    recs = read_fixture("accuracy", f"{space}-imagenet")
    np.testing.assert_allclose(pred.predict(recs), forward(reference_one_hot(recs, space)), atol=1e-4, rtol=0)
    rows = moofa.random_subnets(3000, space, seed=1)
    want = forward(reference_one_hot(moofa.decode(rows, space), space))
    np.testing.assert_allclose(pred.predict(rows, threads=2), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("space", PUBLISHED)
def test_published_checkpoint_matches_torch(shared_dir, space):
    path = shared_dir / "reference" / "predictors" / f"{space}.pth.tar"
    forward = torch_published(path)
    pred = moofa.load_predictor(path)
    assert pred.space.name == space and pred.layer_sizes == [124, 400, 400, 400, 1]
    recs = read_fixture("accuracy", f"{space}-imagenet")
    want = forward(reference_one_hot(recs, space))
    np.testing.assert_allclose(pred.predict(recs), want, atol=1e-4, rtol=0)
    rows = moofa.random_subnets(3000, space, seed=1)
    want = forward(reference_one_hot(moofa.decode(rows, space), space).astype(np.float32))
    np.testing.assert_allclose(pred.predict(rows, threads=2), want, atol=1e-4, rtol=0)
    # And it predicts: the published predictor sits near the measured accuracy.
    top1 = np.array([r["top1"] for r in recs])
    assert np.sqrt(np.mean((pred.predict(recs) - top1) ** 2)) < 1.0


@pytest.mark.parametrize("hidden", [(1,), (37,), (96, 200), (64, 64, 64, 64)])
def test_random_torch_nets_match(hidden):
    torch = pytest.importorskip("torch")
    torch.manual_seed(len(hidden))
    sizes = [124, *hidden, 1]
    mods = []
    for a, b in zip(sizes, sizes[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*mods[:-1]).eval()
    skip = torch.nn.Linear(124, 1, bias=False)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    pred = moofa.Predictor(
        "moofa-e346",
        [m.weight.detach().numpy().T for m in linears],
        [m.bias.detach().numpy() for m in linears],
        skip=skip.weight.detach().numpy()[0],
        scale=3.0,
        offset=50.0,
    )
    rows = moofa.random_subnets(2000, "moofa-e346", seed=7)
    x = torch.tensor(reference_one_hot(moofa.decode(rows, "moofa-e346"), "moofa-e346"))
    with torch.no_grad():
        want = (50.0 + 3.0 * (net(x) + skip(x)).squeeze(1)).numpy()
    np.testing.assert_allclose(pred.predict(rows), want, atol=1e-4, rtol=0)


def small_predictor(space="moofa", seed=0, **kw):
    rng = np.random.default_rng(seed)
    n = one_hot_size(space)
    return moofa.Predictor(
        space,
        [rng.normal(size=(n, 24)), rng.normal(size=(24, 1))],
        [rng.normal(size=24), rng.normal(size=1)],
        skip=rng.normal(size=n),
        scale=0.5,
        offset=70.0,
        metadata={"name": "tiny", "validation": {"rmse": 1.0}},
        **kw,
    )


def test_save_and_load_round_trip(tmp_path):
    pred = small_predictor()
    npz, js = pred.save(tmp_path / "tiny")
    assert npz.name == "tiny.npz" and js.name == "tiny.json"
    assert not list(tmp_path.glob("*.tmp"))
    doc = json.loads(js.read_text())
    assert doc["space"]["name"] == "moofa"
    assert doc["space"]["definition"] == moofa.get_space("moofa").to_dict()
    assert doc["encoding"]["size"] == 124 and doc["layers"] == [[124, 24], [24, 1]]
    assert doc["output"] == {"scale": 0.5, "offset": 70.0, "unit": "top1 percent"}
    rows = moofa.random_subnets(500, "moofa", seed=1)
    for path in (js, npz, tmp_path / "tiny"):
        back = moofa.load_predictor(path)
        np.testing.assert_array_equal(back.predict(rows), pred.predict(rows))
        assert back.metrics == {"rmse": 1.0}
    # A user-defined space travels inside the JSON: no registration needed to load it.
    user = moofa.Space(name="test-predictor-io", stages=(moofa.Stage(16, 2, max_depth=3),), depths=(1, 3))
    p2 = small_predictor(user)
    p2.save(tmp_path / "user")
    back = moofa.load_predictor(tmp_path / "user.json")
    assert back.space == user
    rows = moofa.random_subnets(50, user, seed=0)
    np.testing.assert_array_equal(back.predict(rows), p2.predict(rows))


def test_predict_accepts_subnets_dicts_and_rows():
    pred = small_predictor()
    rows = moofa.random_subnets(5, "moofa", seed=3)
    nets = moofa.decode(rows, "moofa")
    a = pred.predict(rows)
    np.testing.assert_array_equal(pred.predict(nets), a)
    np.testing.assert_array_equal(pred.predict([n.to_dict() for n in nets]), a)
    assert pred.predict(nets[0]).shape == (1,)
    with pytest.raises(ValueError, match="image_size"):
        pred.predict({**nets[0].to_dict(), "image_size": 100})
    with pytest.raises(ValueError, match="threads"):
        pred.predict(rows, threads=-1)


def test_scorer_is_the_core_object():
    pred = small_predictor()
    assert isinstance(pred.scorer, moofa._ext.core.Scorer)
    rows = moofa.random_subnets(10, "moofa", seed=0)
    np.testing.assert_array_equal(pred.scorer.score(rows, 1), pred.predict(rows))


def test_bad_predictors_are_refused():
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(124, 8)), rng.normal(size=(8, 1))]
    b = [np.zeros(8), np.zeros(1)]
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(100, 8\).*124 features"):
        moofa.Predictor("moofa", [w[0][:100], w[1]], b)
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(1,\)"):
        moofa.Predictor("moofa", w, [b[0], np.zeros(2)])
    with pytest.raises(ValueError, match="last layer must have 1 output"):
        moofa.Predictor("moofa", [w[0]], [b[0]])
    bad = w[1].copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"weights\[1\] holds NaN"):
        moofa.Predictor("moofa", [w[0], bad], b)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        moofa.Predictor("moofa", w, b, scale=float("inf"))
    with pytest.raises(TypeError, match="lists of arrays"):
        moofa.Predictor("moofa", np.zeros((2, 124, 8)), b)
    with pytest.raises(ValueError, match="isa must be one of"):
        moofa.Predictor("moofa", w, b, isa="fast")
    with pytest.raises(ValueError, match="unknown space"):
        moofa.Predictor("nope", w, b)


def test_bad_files_are_refused(tmp_path):
    pred = small_predictor()
    npz, js = pred.save(tmp_path / "p")
    # Another space: the JSON names the space the weights belong to.
    with pytest.raises(ValueError, match="for space 'moofa', not 'ofa'"):
        moofa.load_predictor(js, space="ofa")
    # Truncated weights.
    cut = tmp_path / "cut"
    shutil.copy(js, cut.with_suffix(".json"))
    cut.with_suffix(".npz").write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(ValueError, match="SHA-256 differs"):
        moofa.load_predictor(cut.with_suffix(".json"))
    doc = json.loads(js.read_text())
    doc.pop("weights_sha256")
    cut.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        moofa.load_predictor(cut.with_suffix(".json"))
    # Truncated metadata.
    shutil.copy(npz, tmp_path / "half.npz")
    (tmp_path / "half.json").write_text(js.read_text()[:100])
    with pytest.raises(ValueError, match="not valid JSON"):
        moofa.load_predictor(tmp_path / "half.npz")
    # Shapes that disagree with the metadata, another encoding, a missing file, NaN weights.
    for change, match in [
        ({"layers": [[124, 25], [25, 1]]}, "w0 has shape"),
        ({"encoding": {"name": "other", "size": 124}}, "encoding"),
        ({"format": "something"}, "not a moofa predictor"),
        ({"version": 99}, "version 99"),
        (
            {
                "space": {
                    "name": "ofa",
                    "definition": moofa.get_space("moofa-e1-2").to_dict() | {"name": "ofa", "resolutions": [128, 224]},
                }
            },
            "encoding size 124",
        ),
    ]:
        d = dict(doc, **change)
        shutil.copy(npz, tmp_path / "x.npz")
        (tmp_path / "x.json").write_text(json.dumps(d))
        with pytest.raises(ValueError, match=match):
            moofa.load_predictor(tmp_path / "x.json")
    with pytest.raises(ValueError, match="not found"):
        moofa.load_predictor(tmp_path / "absent.json")
    nan = tmp_path / "nan"
    np.savez(
        nan.with_suffix(".npz"),
        w0=np.full((124, 24), np.nan, np.float32),
        b0=np.zeros(24, np.float32),
        w1=np.zeros((24, 1), np.float32),
        b1=np.zeros(1, np.float32),
        skip=np.zeros(124, np.float32),
    )
    nan.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="NaN"):
        moofa.load_predictor(nan.with_suffix(".json"))
    with pytest.raises(ValueError, match="unknown predictor"):
        moofa.load_predictor("no-such-predictor")
    with pytest.raises(TypeError, match="name or a path"):
        moofa.load_predictor(3)


def test_bad_checkpoints_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    src = published_layout_checkpoint(tmp_path / "src.pth.tar")
    # A checkpoint for another space or encoding (here 4 kernels: 144 inputs expected).
    other = moofa.Space(name="test-predictor-k4", stages=moofa.get_space("ofa").stages, kernels=(1, 3, 5, 7))
    with pytest.raises(ValueError, match="takes 124 inputs but space 'test-predictor-k4' encodes 144"):
        moofa.load_predictor(src, space=other)
    cut = tmp_path / "moofa.pth.tar"
    cut.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        moofa.load_predictor(cut)
    with pytest.raises(ValueError, match="pass space="):
        shutil.copy(src, tmp_path / "mystery.pth.tar")
        moofa.load_predictor(tmp_path / "mystery.pth.tar")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    sd["layers.1.0.weight"] = sd["layers.1.0.weight"][:, :300]
    torch.save(sd, tmp_path / "moofa.pth")
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(300, 400\)"):
        moofa.load_predictor(tmp_path / "moofa.pth")
    sd = torch.load(src, map_location="cpu", weights_only=True)
    sd["layers.0.0.bias"][5] = float("nan")
    torch.save(sd, tmp_path / "ofa.pth")
    with pytest.raises(ValueError, match="NaN"):
        moofa.load_predictor(tmp_path / "ofa.pth")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "ofa.pt")
    with pytest.raises(ValueError, match="unexpected entry 'conv.weight'"):
        moofa.load_predictor(tmp_path / "ofa.pt")


def _saved_pair(tmp_path):
    npz, js = small_predictor().save(tmp_path / "p")
    doc = json.loads(js.read_text())
    doc.pop("weights_sha256")  # let the damage reach the reader, not just the checksum
    return npz, js, doc


def _write_npy_member(path, arrays, header_of=None):
    """An .npz by hand; ``header_of`` maps a name to a shape to put in its header instead."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            header = np.lib.format.header_data_from_array_1_0(arr)
            if header_of and name in header_of:
                header["shape"] = header_of[name]
            np.lib.format.write_array_header_1_0(buf, header)
            buf.write(arr.tobytes())
            zf.writestr(f"{name}.npy", buf.getvalue())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"layers": [5]}, r"'layers'\[0\] must be an \[in, out\] pair"),
        ({"layers": [[124, 24], [24]]}, r"'layers'\[1\] must be an \[in, out\] pair"),
        ({"layers": [[100, 24], [24, 1]]}, r"'layers'\[0\] is \[100, 24\], but its input must be 124"),
        ({"layers": [[124, 24], [24, 2]]}, "must end in one output"),
        ({"layers": [[124, 2**30], [2**30, 1]]}, r"'layers'\[0\] must be an \[in, out\] pair of integers in 1\.\."),
        ({"layers": "124x24"}, "'layers' must list the layer shapes"),
        ({"output": [1]}, "'output' must be an object"),
        ({"output": {"scale": "x"}}, "'output'.scale must be a finite number"),
        ({"skip": "yes"}, "'skip' must be true or false"),
    ],
)
def test_malformed_json_names_file_and_field(tmp_path, change, match):
    _, js, doc = _saved_pair(tmp_path)
    js.write_text(json.dumps(doc | change))
    with pytest.raises(ValueError, match=match) as info:
        moofa.load_predictor(js)
    assert str(js) in str(info.value)


def test_npy_header_declaring_terabytes_is_refused_before_allocating(tmp_path):
    npz, js, doc = _saved_pair(tmp_path)
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    huge = (124, 2**40)  # 451 TiB of float32 if it were allocated
    _write_npy_member(npz, arrays, header_of={"w0": huge})
    js.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"array w0 has shape \[124, 1099511627776\], but p.json says \[124, 24\]"):
        moofa.load_predictor(js)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("dtype", "array w0 has dtype int32; expected float32"),
        ("missing", "array b1 is missing"),
        ("short", "array w0 is truncated"),
        ("deflate", "truncated or corrupt"),
        ("garbage", "truncated or corrupt"),
    ],
)
def test_damaged_weights_name_the_file(tmp_path, damage, match):
    npz, js, doc = _saved_pair(tmp_path)
    js.write_text(json.dumps(doc))
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    if damage == "dtype":
        _write_npy_member(npz, arrays | {"w0": arrays["w0"].astype(np.int32)})
    elif damage == "missing":
        _write_npy_member(npz, {k: v for k, v in arrays.items() if k != "b1"})
    elif damage == "short":
        _write_npy_member(npz, arrays | {"w0": arrays["w0"][:100]}, header_of={"w0": (124, 24)})
    elif damage == "deflate":
        raw = bytearray(npz.read_bytes())
        start = raw.index(b"w0.npy") + len("w0.npy")  # the first member's compressed data
        raw[start + 40 : start + 200] = bytes(160)
        npz.write_bytes(bytes(raw))
    else:
        npz.write_bytes(b"PK\x03\x04" + bytes(500))
    with pytest.raises(ValueError, match=match) as info:
        moofa.load_predictor(js)
    assert str(npz) in str(info.value)


def test_non_finite_prediction_is_refused():
    n = one_hot_size("moofa")
    big = np.float32(3e38)
    pred = moofa.Predictor(
        "moofa",
        [np.full((n, 2), big), np.array([[big], [-big]], np.float32)],
        [np.zeros(2), np.zeros(1)],
        metadata={"name": "overflowing"},
    )
    with pytest.raises(ValueError, match="predictor 'overflowing': non-finite prediction for 3 of 3 subnets"):
        pred.predict(moofa.random_subnets(3, "moofa", seed=0))


def test_prediction_outside_0_100_warns_once_per_call():
    n = one_hot_size("moofa")
    pred = moofa.Predictor("moofa", [np.zeros((n, 1))], [np.zeros(1)], offset=103.5, metadata={"name": "optimistic"})
    with pytest.warns(moofa.predictor.PredictionRangeWarning, match="optimistic.*5 of 5 subnets") as record:
        out = pred.predict(moofa.random_subnets(5, "moofa", seed=0))
    assert len(record) == 1 and issubclass(record[0].category, UserWarning)
    np.testing.assert_allclose(out, 103.5)
    inside = moofa.Predictor("moofa", [np.zeros((n, 1))], [np.zeros(1)], offset=70.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inside.predict(moofa.random_subnets(5, "moofa", seed=0))
