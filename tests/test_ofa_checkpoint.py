"""OFA's MobileNetV3 supernet checkpoints loaded into moofa (``Supernet.from_ofa``).

Ground truth: ``../shared/reference/ofa/`` holds two checkpoints in OFA's layout (w1.0 and
w1.2, random weights, BN statistics and kernel-transform matrices) written by OFA's own
``OFAMobileNetV3``, and the logits and parameter counts that OFA's ``get_active_subnet()``
gives for 10 subnets of each (``expected_logits.json``). Those tests skip when ``../shared``
is absent (the files are 31 MB and 43 MB); CI has it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import moofa  # noqa: E402
import moofa.nn as mnn  # noqa: E402
from moofa.cli import main  # noqa: E402
from moofa.nn.ofa import ofa_key  # noqa: E402

W10 = "ofa_mbv3_d234_e346_k357_w1.0.random.pth.tar"
W12 = "ofa_mbv3_d234_e346_k357_w1.2.random.pth.tar"
SPACE_OF = {W10: "ofa", W12: "ofa-w1.2"}
TOL = 1e-4  # of each subnet's largest |logit| (the fixture's README: 2 threads move them by 2e-5)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ref(shared_dir):
    folder = shared_dir / "reference" / "ofa"
    if not (folder / "expected_logits.json").is_file():
        pytest.skip(f"needs {folder} (OFA reference checkpoints)")
    return folder


@pytest.fixture(scope="module")
def expected(ref):
    return json.loads((ref / "expected_logits.json").read_text())


@pytest.fixture(scope="module")
def loaded(ref):
    return {name: mnn.Supernet.from_ofa(ref / name).eval() for name in (W10, W12)}


@pytest.fixture(scope="module")
def raw(ref):
    return {name: torch.load(ref / name, map_location="cpu", weights_only=True)["state_dict"] for name in (W10, W12)}


def _subnet(record: dict, space) -> moofa.Subnet:
    # OFA's sampler fills all 20 slots of ks/e, inactive ones included: moofa accepts them.
    return moofa.Subnet.from_dict({k: record[k] for k in ("ks", "e", "d", "image_size")}, space)


def _input(record: dict):
    torch.manual_seed(record["input_seed"])
    size = record["image_size"]
    return torch.randn(2, 3, size, size)


def _jit_load(path):
    with warnings.catch_warnings():  # torch.jit.load itself is deprecated upstream
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def _rel_err(got, want) -> float:
    want = torch.as_tensor(want, dtype=torch.float64)
    return float((torch.as_tensor(got, dtype=torch.float64) - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("name", [W10, W12])
def test_files_are_the_documented_ones(ref, expected, name):
    info = expected["files"][name]
    assert hashlib.sha256((ref / name).read_bytes()).hexdigest() == info["sha256"]


@pytest.mark.parametrize("name", [W10, W12])
def test_logits_and_params_match_ofa(loaded, expected, name):
    sup, info = loaded[name], expected["files"][name]
    assert sup.space.name == SPACE_OF[name]
    assert sum(p.numel() for p in sup.parameters()) == info["supernet_params"]
    assert len(info["subnets"]) == 10
    worst_sub = worst_sup = 0.0
    for record in info["subnets"]:
        net = _subnet(record, sup.space)
        x = _input(record)
        sub = sup.extract(net).eval()
        sup.set_active_subnet(net)
        with torch.no_grad():
            worst_sub = max(worst_sub, _rel_err(sub(x), record["logits"]))
            worst_sup = max(worst_sup, _rel_err(sup(x), record["supernet_logits"]))
        assert sum(p.numel() for p in sub.parameters()) == record["params"]
        assert moofa.profile(net, sup.space).params == record["params"]
    print(f"{name}: max relative logit error, subnet {worst_sub:.2e}, supernet {worst_sup:.2e}")
    assert worst_sub <= TOL and worst_sup <= TOL


def test_ofa_w12_space_profile_matches_the_oracle_and_a_forward(loaded, expected):
    from oracle import evaluate

    sup = loaded[W12]
    sp = moofa.get_space("ofa-w1.2")
    for record in expected["files"][W12]["subnets"][:3]:
        net = _subnet(record, sp)
        prof = moofa.profile(net, sp)
        want = evaluate(sp, list(net.ks), list(net.e), list(net.d), net.image_size)
        assert (prof.peak, prof.hist, prof.params) == (want["peak"], want["hist"], want["params"])
        assert prof.mflops == pytest.approx(want["mflops"], rel=1e-12)
        size = net.image_size
        real = mnn.profile_memory(sup.extract(net), (1, 3, size, size))
        assert (real.peak, real.params) == (prof.peak, prof.params)


def test_ofa_w12_space_facts():
    sp = moofa.get_space("ofa-w1.2")
    assert "ofa-w1.2" in moofa.spaces.names()
    assert (sp.first_conv_width, sp.first_block_width) == (24, 24)
    assert sp.widths == [32, 48, 96, 136, 192]
    assert (sp.final_expand_width, sp.feature_mix_width, sp.n_classes) == (1152, 1536, 1000)
    ofa = moofa.get_space("ofa")
    for field in ("kernels", "expands", "depths", "resolutions", "head_act", "first_conv_act", "first_block_act"):
        assert getattr(sp, field) == getattr(ofa, field)
    assert [(s.stride, s.act, s.se) for s in sp.stages] == [(s.stride, s.act, s.se) for s in ofa.stages]


def _rename_old_style(state: dict) -> dict:
    """OFA's older spelling: ``.mobile_inverted_conv.``, single ``.bn.``/``.conv.weight``,
    doubled ``.linear.linear.``."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^blocks\.(\d+)\.conv\.", r"blocks.\1.mobile_inverted_conv.", k)
        k = k.replace(".bn.bn.", ".bn.").replace(".conv.conv.weight", ".conv.weight")
        out[k.replace("classifier.linear.", "classifier.linear.linear.")] = v
    return out


def test_old_names_and_spelling_variants_load_the_same(raw, loaded, expected):
    old = _rename_old_style(raw[W10])
    assert sum(".mobile_inverted_conv." in k for k in old) == 460
    sup = mnn.Supernet.from_ofa({"state_dict": old}).eval()
    assert sup.space.name == "ofa"
    mine, ref = sup.state_dict(), loaded[W10].state_dict()
    assert all(torch.equal(mine[k], ref[k]) for k in ref)
    record = expected["files"][W10]["subnets"][3]
    with torch.no_grad():
        logits = sup.extract(_subnet(record, sup.space)).eval()(_input(record))
    assert _rel_err(logits, record["logits"]) <= TOL


def test_missing_tensors_are_refused_by_name(raw):
    state = dict(raw[W10])
    del state["blocks.7.conv.depth_conv.conv.7to5_matrix"]
    del state["blocks.20.conv.depth_conv.se.fc.expand.bias"]
    with pytest.raises(ValueError, match=r"2 missing tensors") as err:
        mnn.Supernet.from_ofa(state, space="ofa")
    assert "blocks.7.conv.depth_conv.conv.7to5_matrix" in str(err.value)
    assert "blocks.20.conv.depth_conv.se.fc.expand.bias" in str(err.value)
    # Without a space: it fits neither OFA space, and the error is the one of the file's width.
    with pytest.raises(ValueError, match=r"fits none of the OFA spaces \['ofa', 'ofa-w1.2'\].*7to5_matrix"):
        mnn.Supernet.from_ofa({"state_dict": state})


def test_a_missing_batch_counter_reads_as_zero_like_torch(raw):
    state = dict(raw[W10])
    del state["first_conv.bn.num_batches_tracked"]
    sup = mnn.Supernet.from_ofa(state)
    assert int(sup.first_conv.bn.num_batches_tracked) == 0


def test_unexpected_and_misshapen_tensors_are_refused_by_name(raw):
    state = dict(raw[W10])
    state["blocks.21.conv.point_linear.conv.conv.weight"] = torch.zeros(160, 960, 1, 1)
    with pytest.raises(ValueError, match=r"1 unexpected tensors \[blocks\.21\.conv\.point_linear"):
        mnn.Supernet.from_ofa(state, space="ofa")
    state = dict(raw[W10])
    state["blocks.3.conv.point_linear.conv.conv.weight"] = torch.zeros(24, 72, 1, 1)
    with pytest.raises(
        ValueError,
        match=re.escape("blocks.3.conv.point_linear.conv.conv.weight: expected (24, 144, 1, 1), got (24, 72, 1, 1)"),
    ):
        mnn.Supernet.from_ofa(state, space="ofa")


def test_wrong_width_is_refused(raw):
    with pytest.raises(ValueError, match=r"as space 'ofa' does not fit: .*shape mismatches.*first_conv"):
        mnn.Supernet.from_ofa(raw[W12], space="ofa")
    with pytest.raises(ValueError, match=r"as space 'ofa-w1.2' does not fit"):
        mnn.Supernet.from_ofa(raw[W10], space="ofa-w1.2")


def test_two_spellings_of_one_tensor_are_refused(raw):
    state = dict(raw[W10])
    state["first_conv.bn.bn.weight"] = state["first_conv.bn.weight"]
    with pytest.raises(ValueError, match=r"'first_conv.bn.weight' and 'first_conv.bn.bn.weight' name the same"):
        mnn.Supernet.from_ofa(state)


def test_other_spaces_in_ofa_layout_are_refused():
    # moofa's own space written under OFA's names: widths fit neither OFA supernet.
    own = mnn.Supernet("moofa").state_dict()
    with pytest.raises(ValueError, match=r"fits none of the OFA spaces"):
        mnn.Supernet.from_ofa({ofa_key(k): v for k, v in own.items()})


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        mnn.Supernet.from_ofa(tmp_path / "nope.pth.tar")
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        mnn.Supernet.from_ofa(bad)
    with pytest.raises(TypeError, match="must hold a dict"):
        mnn.Supernet.from_ofa([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not a tensor: \['x'\]"):
        mnn.Supernet.from_ofa({"state_dict": {"x": 1}})


def test_torchscript_and_onnx_exports_give_ofas_logits(loaded, expected, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    sup = loaded[W10]
    record = expected["files"][W10]["subnets"][0]
    net, x = _subnet(record, sup.space), _input(record)
    size = net.image_size
    sub = sup.extract(net)
    scripted = _jit_load(mnn.export(sub, tmp_path / "sub.pt", (1, 3, size, size)))
    with torch.no_grad():
        assert _rel_err(scripted(x), record["logits"]) <= TOL
    path = mnn.export(sub, tmp_path / "sub.onnx", (1, 3, size, size), format="onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (logits,) = ReferenceEvaluator(model).run(None, {"image": x.numpy()})
    assert _rel_err(torch.from_numpy(np.asarray(logits)), record["logits"]) <= TOL


def test_cli_ofa_import_writes_moofa_weights_and_a_subnet(ref, expected, tmp_path, capsys):
    record = expected["files"][W12]["subnets"][1]
    config = json.dumps({k: record[k] for k in ("ks", "e", "d", "image_size")})
    out = tmp_path / "imported"
    args = ["ofa-import", str(ref / W12), "--out", str(out), "--config", config, "--export", str(tmp_path / "s.pt")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "space 'ofa-w1.2', 10,715,752 parameters" in text
    sup = mnn.Supernet.load(out / "supernet.npz", space="ofa-w1.2").eval()
    x = _input(record)
    sup.set_active_subnet(_subnet(record, sup.space))
    scripted = _jit_load(tmp_path / "s.pt")
    with torch.no_grad():
        assert _rel_err(sup(x), record["logits"]) <= TOL
        assert _rel_err(scripted(x), record["logits"]) <= TOL
    assert main(["ofa-import", str(ref / W12), "--out", str(out), "--space", "ofa"]) == 2
    assert "as space 'ofa' does not fit" in capsys.readouterr().err
    assert main(["ofa-import", str(ref / W10), "--out", str(out), "--export", str(tmp_path / "s.tflite")]) == 2
    assert "--export: the file must end in .pt, .pt2 or .onnx" in capsys.readouterr().err


def test_cli_ofa_import_without_torch(tmp_path):
    from test_cli_deps import _moofa_without

    out = _moofa_without("torch", "ofa-import", str(tmp_path / "x.pth.tar"), "--out", str(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == 'moofa ofa-import needs PyTorch: pip install "moofa[torch]"'
