"""moofa.export.tflite and moofa.deploy_check against the real runtime: TensorFlow Lite Micro
runs the exported int8 model of a trained digits subnet and agrees with the PyTorch module;
its arena planner gives the memory figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("tflite_micro", reason="tflite-micro has wheels for CPython 3.10-3.12 only (moofa[mcu])")

from tflite_micro.python.tflite_micro import runtime  # noqa: E402

import moofa  # noqa: E402
import moofa.nn as mnn  # noqa: E402
from moofa import data as mdata  # noqa: E402
from moofa import train as mtrain  # noqa: E402
from moofa.deploy import allocate  # noqa: E402
from moofa.export import tflite  # noqa: E402

RESOLUTION = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """digits-tiny trained for a few epochs (full network only, about 10 s on one core)."""
    torch.set_num_threads(1)
    cfg = mtrain.load_config(
        "digits-tiny",
        phases=[{"name": "teacher", "epochs": 3, "lr": 0.2, "warmup_epochs": 1}],
        steps_per_epoch=40,
        batch_size=32,
        calib_batches=4,
        val_batches=None,
        val_batch_size=360,
        checkpoint_every=0,
        resolutions=[RESOLUTION],
    )
    workdir = tmp_path_factory.mktemp("digits")
    mtrain.train(cfg, workdir / "run", progress=False)
    sup = mnn.Supernet.load(workdir / "run" / "supernet")
    train_batches = list(mdata.make_loader(mdata.Digits("train"), 64, [RESOLUTION], train=False))
    net = sup.largest_subnet(RESOLUTION)
    module = sup.recalibrated(net, train_batches[:4])
    calibration = torch.cat([b[0] for b in train_batches[:2]])
    return sup, net, module, calibration, train_batches


@pytest.fixture(scope="module")
def exported(trained):
    _, _, module, calibration, _ = trained
    return tflite(module, calibration)


def run_tflm(model: bytes, images: torch.Tensor) -> np.ndarray:
    """Dequantized logits of TFLM on float NCHW images, one invoke per image."""
    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 21)
    qin = interp.get_input_details(0)["quantization_parameters"]
    qout = interp.get_output_details(0)["quantization_parameters"]
    s_in, z_in = float(qin["scales"][0]), int(qin["zero_points"][0])
    s_out, z_out = float(qout["scales"][0]), int(qout["zero_points"][0])
    outs = []
    for x in images:
        q = np.clip(np.round(x.permute(1, 2, 0).numpy() / s_in) + z_in, -128, 127).astype(np.int8)
        interp.set_input(q[None], 0)
        interp.invoke()
        outs.append((interp.get_output(0).astype(np.float64) - z_out) * s_out)
    return np.concatenate(outs)


def test_tflm_runs_the_export_and_agrees_with_pytorch(trained, exported):
    _, _, module, _, _ = trained
    images, labels = next(iter(mdata.make_loader(mdata.Digits("val"), 1000, [RESOLUTION], train=False)))
    with torch.no_grad():
        reference = module(images).numpy()
    got = run_tflm(exported, images)
    assert got.shape == reference.shape == (len(labels), 10)
    agreement = (got.argmax(1) == reference.argmax(1)).mean()
    acc_tflm = 100 * (got.argmax(1) == labels.numpy()).mean()
    acc_torch = 100 * (reference.argmax(1) == labels.numpy()).mean()
    print(f"top-1 agreement {agreement:.4f}, accuracy TFLM {acc_tflm:.2f} vs PyTorch {acc_torch:.2f}")
    assert acc_torch > 60  # a trained network, so that agreement means something
    assert agreement >= 0.97
    assert abs(acc_tflm - acc_torch) <= 1.5


def test_export_is_int8_nhwc_and_written_atomically(trained, exported, tmp_path):
    _, _, module, calibration, _ = trained
    path = tmp_path / "sub" / "model.tflite"
    data = tflite(module, calibration, path=path)
    assert path.read_bytes() == data == exported  # deterministic
    assert data[4:8] == b"TFL3"
    assert [p.name for p in path.parent.iterdir()] == ["model.tflite"]
    interp = runtime.Interpreter.from_bytes(data, arena_size=1 << 21)
    inp, out = interp.get_input_details(0), interp.get_output_details(0)
    assert inp["dtype"] is np.int8 and list(inp["shape"]) == [1, RESOLUTION, RESOLUTION, 3]
    assert out["dtype"] is np.int8 and list(out["shape"]) == [1, 10]
    module.train()  # the export runs in eval mode and gives the mode back
    try:
        assert tflite(module, calibration) == data
        assert module.training
    finally:
        module.eval()


def test_bad_input_names_the_field(trained):
    sup, net, module, calibration, _ = trained
    with pytest.raises(TypeError, match="module must be an extracted subnet"):
        tflite(sup, calibration)
    with pytest.raises(TypeError, match="module must be an extracted subnet"):
        tflite("model.pt", calibration)
    with pytest.raises(ValueError, match=r"calibration must have shape \(N, 3, 32, 32\)"):
        tflite(module, calibration[:, :, :16, :16])
    with pytest.raises(ValueError, match="calibration must have shape"):
        tflite(module, calibration[0])
    bad = calibration.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="calibration holds NaN"):
        tflite(module, bad)
    with pytest.raises(TypeError, match="calibration must be a float tensor"):
        tflite(module, calibration.to(torch.int64))
    with pytest.raises(TypeError, match="calibration must be a float tensor"):
        tflite(module, [1, 2, 3])
    odd = sup.extract(net)
    odd.blocks[0].depthwise.act = torch.nn.SiLU()
    with pytest.raises(ValueError, match=r"module.blocks.0.depthwise: activation SiLU is not supported"):
        tflite(odd, calibration)


# --- deploy_check --------------------------------------------------------------------------


def test_deploy_check_arena_is_the_smallest_that_works(exported, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(exported)
    report = moofa.deploy_check(path, budget="1MiB")
    assert report.head > 0 and report.tail > 0
    assert report.arena == report.head + report.tail
    assert report.model_size == len(exported)
    print(f"head {report.head} B, tail {report.tail} B, arena {report.arena} B")
    # Each attempt in its own process: exactly the arena works, one byte less does not.
    assert allocate(exported, report.arena).ok
    smaller = allocate(exported, report.arena - 1)
    assert not smaller.ok and "allocate" in smaller.message
    assert not allocate(exported, report.arena * 9 // 10).ok
    # Budgets in bytes; a bare number is bytes too.
    assert report.fits is True and report.budget == 1 << 20
    assert moofa.deploy_check(exported, budget=report.arena).fits is True
    tight = moofa.deploy_check(exported, budget=report.arena - 1)
    assert tight.fits is False and "does NOT fit" in tight.summary()
    assert moofa.deploy_check(exported).fits is None
    # What the model holds.
    assert report.op_counts["CONV_2D"] > 0 and report.op_counts["DEPTHWISE_CONV_2D"] == 6 + 1
    assert set(report.op_counts) <= {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "HARD_SWISH",
        "MEAN",
        "MUL",
        "ADD",
        "FULLY_CONNECTED",
    }
    assert report.inputs[0].shape == (1, RESOLUTION, RESOLUTION, 3) and report.inputs[0].dtype == "int8"
    assert report.outputs[0].shape == (1, 10) and report.outputs[0].dtype == "int8"
    assert {t.dtype for t in report.tensors} <= {"int8", "int32"}
    assert report.to_dict()["arena"] == report.arena


def test_deploy_check_refuses_bad_files(exported, tmp_path):
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        moofa.deploy_check(b"PK\x03\x04 this is a zip file, not a model")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        moofa.deploy_check(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        moofa.deploy_check(exported[: len(exported) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        moofa.deploy_check(exported[:64])
    float_model = Path(runtime.__file__).parent / "sine_float.tflite"  # ships with tflite-micro
    with pytest.raises(ValueError, match="is float32 .*only integer"):
        moofa.deploy_check(float_model)
    with pytest.raises(ValueError, match="does not exist"):
        moofa.deploy_check(tmp_path / "missing.tflite")
    with pytest.raises(TypeError, match="model must be the bytes of a .tflite file or its path"):
        moofa.deploy_check(123)
    with pytest.raises(ValueError, match="budget"):
        moofa.deploy_check(exported, budget="lots")
    with pytest.raises(ValueError, match="arena_size must be a positive integer"):
        allocate(exported, 0)


def test_tflm_head_against_moofa_mcu_peak(trained):
    """TFLM's planned activations (head) vs moofa's analytic `mcu` peak (int8): recorded in
    docs/deploy.md; the planner never needs less than the largest layer's input + output."""
    sup, _, _, _, _ = trained
    gen = torch.Generator().manual_seed(0)
    ratios = []
    for net in sup.random_subnets(10, seed=0):
        module = sup.extract(net).eval()
        model = tflite(module, torch.randn(4, 3, net.image_size, net.image_size, generator=gen))
        report = moofa.deploy_check(model)
        mcu = moofa.profile(net, sup.space, memory_model="mcu", bytes_per_item=1).peak
        ratios.append(report.head / mcu)
        print(f"{net}: mcu {mcu} B, TFLM head {report.head} B ({report.head / mcu:.2f}x), tail {report.tail} B")
        assert report.head >= mcu
    print(f"head / mcu: {min(ratios):.2f} - {max(ratios):.2f}")


# --- command line ------------------------------------------------------------------------


def test_cli_export_and_deploy_check(trained, tmp_path, capsys):
    from moofa.cli import main
    from moofa.export import tflite_from_checkpoint

    sup, _, _, _, _ = trained
    sup.save(tmp_path / "supernet")
    config = {"ks": [3, 5, 7, 3, 5, 7], "e": [2, 3, 4, 2, 3, 4], "d": [1, 2, 1], "image_size": 40}
    (tmp_path / "net.json").write_text(json.dumps(config))
    (tmp_path / "space.json").write_text(json.dumps(sup.space.to_dict()))
    out = tmp_path / "model.tflite"
    args = ["export", "--checkpoint", str(tmp_path / "supernet.npz"), "--space", str(tmp_path / "space.json")]
    assert main([*args, "--config", str(tmp_path / "net.json"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_bytes() == tflite_from_checkpoint(tmp_path / "supernet.npz", config)
    report = moofa.deploy_check(out)
    assert report.inputs[0].shape == (1, 40, 40, 3)

    assert main(["deploy-check", str(out), "--budget", str(report.arena)]) == 0
    text = capsys.readouterr().out
    assert f"fits: arena {report.arena:,} B" in text and "head" in text and "tail" in text
    assert main(["deploy-check", str(out), "--budget", f"{report.arena - 1}B"]) == 1
    assert "does NOT fit" in capsys.readouterr().out
    assert main(["deploy-check", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arena"] == report.arena
    assert main(["deploy-check", str(tmp_path / "net.json")]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    assert main([*args[:-2], "--space", "moofa", "--out", str(out)]) == 2
    assert "is for space 'digits-tiny'" in capsys.readouterr().err


def test_onnx_export_from_moofa_export(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    _, _, module, _, _ = trained
    path = moofa.export.onnx(module, tmp_path / "m.onnx", (1, 3, RESOLUTION, RESOLUTION))
    assert onnx.load(str(path)).graph.input[0].name == "image"


def test_cli_names_the_missing_extra(exported, tmp_path, capsys, monkeypatch):
    from moofa.cli import main

    path = tmp_path / "model.tflite"
    path.write_bytes(exported)
    for name in [m for m in sys.modules if m == "tflite_micro" or m.startswith("tflite_micro.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert main(["deploy-check", str(path)]) == 2
    assert 'moofa deploy-check needs tflite-micro: pip install "moofa[mcu]"' in capsys.readouterr().err


def test_other_space_features_match_pytorch(tmp_path):
    """ReLU6, no feature mix, e = 1 blocks (no expansion layer), a stride-1 stage with
    shortcuts, odd and even resolutions: a briefly trained supernet of such a space, exported,
    agrees with PyTorch on the digits validation images."""
    space = moofa.Space(
        name="tflite-variants",
        stages=(
            moofa.Stage(16, 2, "relu", False, 2),
            moofa.Stage(24, 2, "h_swish", True, 2),
            moofa.Stage(24, 1, "relu6", True, 2),
            moofa.Stage(32, 2, "relu6", False, 2),
        ),
        kernels=(3, 5),
        expands=(1,),
        depths=(1, 2),
        resolutions=(33, 40),
        first_conv_width=16,
        first_block_width=16,
        final_expand_width=64,
        feature_mix_width=0,
        n_classes=10,
        first_conv_act="relu6",
        head_act="h_swish",
    )
    cfg = mtrain.load_config(
        "digits-tiny",
        space=space.to_dict(),
        phases=[{"name": "teacher", "epochs": 3, "lr": 0.2, "warmup_epochs": 1}],
        steps_per_epoch=45,
        batch_size=32,
        calib_batches=2,
        val_batches=None,
        val_batch_size=360,
        checkpoint_every=0,
    )
    mtrain.train(cfg, tmp_path / "run", progress=False)
    sup = mnn.Supernet.load(tmp_path / "run" / "supernet")
    for size in (33, 40):
        batches = list(mdata.make_loader(mdata.Digits("train"), 64, [size], train=False))[:4]
        module = sup.recalibrated(sup.largest_subnet(size), batches)
        model = tflite(module, torch.cat([b[0] for b in batches[:2]]))
        images, labels = next(iter(mdata.make_loader(mdata.Digits("val"), 1000, [size], train=False)))
        with torch.no_grad():
            reference = module(images).numpy()
        got = run_tflm(model, images)
        agreement = (got.argmax(1) == reference.argmax(1)).mean()
        acc_tflm = 100 * (got.argmax(1) == labels.numpy()).mean()
        acc_torch = 100 * (reference.argmax(1) == labels.numpy()).mean()
        print(f"{size} px: agreement {agreement:.4f}, accuracy TFLM {acc_tflm:.2f} vs PyTorch {acc_torch:.2f}")
        assert acc_torch > 50
        assert agreement >= 0.97
        assert abs(acc_tflm - acc_torch) <= 1.5
