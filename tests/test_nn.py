"""moofa.nn: the elastic supernet, extraction and memory measured on real forward passes.

Ground truth: the published logger's figures in shared/data/profiles, the C++ evaluator
(itself checked against those files) for random configs, and the supernet's own forward pass
for the extracted subnets.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import BUILTIN_SPACES, read_fixture  # noqa: E402

import moofa  # noqa: E402
import moofa.nn as mnn  # noqa: E402
from moofa.nn.elastic import ElasticDepthwise  # noqa: E402

N_CONFIGS = 50


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_space(name="tiny-test", **changes) -> moofa.Space:
    """A user-defined space small enough to train in seconds on a CPU."""
    fields = dict(
        name=name,
        stages=(
            moofa.Stage(8, 2, "relu", False, 2),
            moofa.Stage(16, 2, "h_swish", True, 2),
            moofa.Stage(16, 1, "relu6", True, 2),
            moofa.Stage(24, 2, "swish", False, 2),
        ),
        kernels=(3, 5, 7),
        expands=(1, 2, 3),
        depths=(1, 2),
        resolutions=(32, 40, 48),
        first_conv_width=8,
        first_block_width=8,
        final_expand_width=48,
        feature_mix_width=64,
        n_classes=10,
        first_conv_act="h_swish",
        head_act="h_swish",
    )
    fields.update(changes)
    return moofa.Space(**fields)


@torch.no_grad()
def randomise(sup: mnn.Supernet, seed: int = 0) -> mnn.Supernet:
    """Move every weight and statistic away from its initial value, so that a wrong slice,
    a skipped kernel transformation or an unused BN buffer changes the output."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sup.named_parameters():
        if "transforms" in name:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        elif p.dim() == 1:
            p.copy_(0.2 * torch.randn(p.shape, generator=g) + (1.0 if name.endswith("weight") else 0.0))
        else:
            p.mul_(0.8 + 0.4 * torch.rand(p.shape, generator=g))
    for name, b in sup.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return sup


@pytest.fixture(scope="module", params=BUILTIN_SPACES)
def builtin_supernet(request):
    torch.manual_seed(0)
    return randomise(mnn.Supernet(request.param)).eval()


def test_hooked_memory_matches_published_logger(builtin_supernet):
    sup = builtin_supernet
    records = read_fixture("profiles", sup.space.name)[:4]
    assert records
    for rec in records:
        net = moofa.Subnet.from_dict(rec["config"])
        got = mnn.profile_memory(sup.extract(net), (1, 3, net.image_size, net.image_size))
        assert got.peak == rec["peak"]
        assert got.hist == [int(h) for h in rec["hist"]]
        assert got.params == rec["params"]
        assert got.mflops == pytest.approx(rec["mflops"], rel=1e-6)


def test_extraction_and_hooked_memory_on_random_configs(builtin_supernet):
    """>= 50 random configs per built-in space: the extracted subnet's forward equals the
    supernet's active forward (eval mode), and its hooked peak, histogram, parameters and
    MFLOPs equal the C++ evaluator's."""
    sup = builtin_supernet
    space = sup.space
    nets = moofa.decode(moofa.random_subnets(N_CONFIGS, space, seed=7), space)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for net in nets:
        sub = sup.extract(net)
        assert isinstance(sub, mnn.SubnetModel)
        with torch.no_grad():
            sup.set_active_subnet(net)
            want = sup(x)
            got = sub.eval()(x)
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * max(1.0, scale))

        hooked = mnn.profile_memory(sub, (1, 3, net.image_size, net.image_size))
        computed = moofa.profile(net, space)
        assert hooked.hist == computed.hist, net
        assert hooked.peak == computed.peak
        assert hooked.params == computed.params
        assert hooked.mflops == pytest.approx(computed.mflops, rel=1e-9)
        assert len(hooked.layers) == len(computed.layers)


@pytest.mark.parametrize("memory_model", ["full", "activations"])
def test_user_space_memory_agrees_with_cpp_evaluator(memory_model):
    space = tiny_space()
    sup = mnn.Supernet(space).eval()
    nets = moofa.decode(moofa.random_subnets(60, space, seed=3), space)
    for net in nets:
        hooked = mnn.profile_memory(sup.extract(net), (1, 3, net.image_size, net.image_size), memory_model=memory_model)
        computed = moofa.profile(net, space, memory_model=memory_model)
        assert (hooked.peak, hooked.hist, hooked.params) == (computed.peak, computed.hist, computed.params)
        assert hooked.mflops == pytest.approx(computed.mflops, rel=1e-9)


def test_space_without_feature_mix_and_identity_first_block():
    # first block 8 -> 8 keeps an identity shortcut; no feature-mix layer at all.
    space = tiny_space("tiny-nofm", feature_mix_width=0)
    sup = randomise(mnn.Supernet(space, n_classes=3)).eval()
    assert sup.space.n_classes == 3
    assert isinstance(sup.feature_mix, torch.nn.Identity)
    for net in sup.random_subnets(10, seed=0):
        sub = sup.extract(net)
        x = torch.randn(1, 3, net.image_size, net.image_size)
        with torch.no_grad():
            sup.set_active_subnet(net)
            torch.testing.assert_close(sub.eval()(x), sup(x), rtol=1e-5, atol=1e-5)
        hooked = mnn.profile_memory(sub, tuple(x.shape))
        computed = moofa.profile(net, sup.space)
        assert (hooked.peak, hooked.hist, hooked.params) == (computed.peak, computed.hist, computed.params)


def test_elastic_kernel_uses_centre_and_transformation():
    dw = ElasticDepthwise(4, (3, 5, 7), stride=1)
    with torch.no_grad():
        dw.weight.copy_(torch.arange(4 * 49, dtype=torch.float32).reshape(4, 1, 7, 7))
    # Identity transformations: the centre crop of the largest kernel.
    torch.testing.assert_close(dw.active_weight(5, 4), dw.weight[:, :, 1:6, 1:6])
    torch.testing.assert_close(dw.active_weight(3, 2), dw.weight[:2, :, 2:5, 2:5])
    with torch.no_grad():
        dw.transforms["7to5"].copy_(2 * torch.eye(25))
        dw.transforms["5to3"].copy_(torch.eye(9).flip(0))
    # 7 -> 5 doubles, 5 -> 3 reverses the flattened 3x3 centre of that.
    want = (2 * dw.weight[:, :, 2:5, 2:5]).reshape(4, 9).flip(1).reshape(4, 1, 3, 3)
    torch.testing.assert_close(dw.active_weight(3, 4), want)
    with pytest.raises(ValueError, match="kernel must be one of"):
        dw.active_weight(4, 4)


def test_sort_channels_keeps_the_full_network_and_puts_important_channels_first():
    space = tiny_space(expands=(2, 3))
    sup = randomise(mnn.Supernet(space), seed=2).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        before = sup(x)
        sup.sort_channels()
        after = sup(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    for block in sup.blocks:
        importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


def test_sampling_respects_restrictions_and_coupling():
    sup = mnn.Supernet("compofa")
    rng = np.random.default_rng(0)
    for _ in range(20):
        net = sup.sample_active_subnet(rng, kernels=[7], depths=[3, 4])
        assert set(net.ks) == {7} and set(net.d) <= {3, 4}
        net.validate("compofa")  # the expand ratio follows the depth
        assert sup.active == net
    with pytest.raises(ValueError, match="depths must be a non-empty subset"):
        sup.sample_active_subnet(rng, depths=[5])


def test_bad_input_names_the_field():
    sup = mnn.Supernet(tiny_space())
    with pytest.raises(ValueError, match=r"Subnet.ks\[0\]=4"):
        sup.set_active_subnet(moofa.Subnet(ks=[4] * 8, e=[2] * 8, d=[2] * 4, image_size=32))
    with pytest.raises(ValueError, match="image_size"):
        sup.set_active_subnet(moofa.Subnet(ks=[3] * 8, e=[2] * 8, d=[2] * 4, image_size=224))
    with pytest.raises(ValueError, match="n_classes"):
        mnn.Supernet("ofa", n_classes=0)
    with pytest.raises(ValueError, match="unknown space"):
        mnn.Supernet("no-such-space")
    with pytest.raises(ValueError, match="input must have shape"):
        sup(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        mnn.profile_memory(sup.extract(), (3, 32, 32))
    with pytest.raises(TypeError, match="module"):
        mnn.profile_memory("not a module", (1, 3, 32, 32))


def test_recalibrate_bn_sets_exact_batch_statistics():
    space = tiny_space()
    sup = randomise(mnn.Supernet(space)).eval()
    net = sup.smallest_subnet()
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 3, 32, 32, generator=g) * 2 + 1 for _ in range(3)]
    sub = sup.recalibrated(net, batches)
    assert not sub.training
    # The first conv's BN sees the first conv's output: its mean over all batches must match.
    with torch.no_grad():
        conv_out = torch.cat([sub.first_conv.conv(b) for b in batches])
    torch.testing.assert_close(sub.first_conv.bn.running_mean, conv_out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    # The supernet's own statistics are untouched.
    assert not torch.equal(sup.first_conv.bn.running_mean, sub.first_conv.bn.running_mean)
    with pytest.raises(ValueError, match="no batch"):
        mnn.recalibrate_bn(sub, [])


def test_weights_roundtrip_npz_json(tmp_path):
    space = tiny_space()
    sup = randomise(mnn.Supernet(space))
    path = sup.save(tmp_path / "sup")
    assert path.name == "sup.npz" and (tmp_path / "sup.json").is_file()
    back = mnn.Supernet.load(tmp_path / "sup")
    for k, v in sup.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    with pytest.raises(ValueError, match="is for space 'tiny-test', which differs"):
        mnn.Supernet.load(tmp_path / "sup", space="ofa")
    (tmp_path / "sup.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt"):
        mnn.Supernet.load(tmp_path / "sup")
    other = mnn.Supernet("ofa")
    with pytest.raises(ValueError, match="another space"):
        other.load_state_dict_checked(sup.state_dict())


def test_torchscript_export_runs_like_the_subnet(tmp_path):
    sup = randomise(mnn.Supernet(tiny_space())).eval()
    net = sup.random_subnets(1, seed=4)[0]
    sub = sup.extract(net).eval()
    path = mnn.export(sub, tmp_path / "sub.pt", (1, 3, 40, 40))
    with warnings.catch_warnings():  # torch.jit.load itself is deprecated upstream
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    x = torch.randn(2, 3, 40, 40)
    torch.testing.assert_close(loaded(x), sub(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="format must be one of"):
        mnn.export(sub, tmp_path / "x", format="tflite")


def test_onnx_export(tmp_path):
    onnx = pytest.importorskip("onnx")
    sup = mnn.Supernet(tiny_space()).eval()
    sub = sup.extract(sup.smallest_subnet())
    path = mnn.export(sub, tmp_path / "sub.onnx", (1, 3, 32, 32), format="onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input][:1] == ["image"]


def test_import_moofa_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = "import sys, moofa; assert 'torch' not in sys.modules, 'torch imported'"
    # cwd outside the source tree, so that the installed package is the one imported
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_torch_export_program(tmp_path):
    sup = randomise(mnn.Supernet(tiny_space())).eval()
    sub = sup.extract(sup.random_subnets(1, seed=5)[0]).eval()
    path = mnn.export(sub, tmp_path / "sub.pt2", (1, 3, 40, 40), format="exported")
    program = torch.export.load(str(path))
    x = torch.randn(1, 3, 40, 40)
    torch.testing.assert_close(program.module()(x), sub(x), rtol=1e-5, atol=1e-5)
