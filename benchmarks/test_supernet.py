"""Speed of the PyTorch side, each against a baseline in the same group:

* ``subnet-profile-moofa``: one subnet's peak/histogram/MFLOPs/params, from moofa's C++
  evaluator vs what the published logger does (extract the subnet from the supernet, run a
  forward pass with hooks, here ``moofa.nn.profile_memory``). Both results are checked equal.
* ``train-step-digits-tiny``: one SGD step (forward + backward, batch 32 at 40 px) of a
  random subnet through the elastic supernet vs the same subnet extracted as a plain module:
  the price of weight sharing (slicing, kernel transformations). Checked: same loss.

    python -m pytest benchmarks/test_supernet.py --benchmark-columns=min,median,max,rounds
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import moofa  # noqa: E402
import moofa.nn as mnn  # noqa: E402
from moofa import train as mtrain  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import one_torch_thread  # noqa: E402, F401  (the fixture, for this module)

NET = moofa.Subnet(ks=[7, 5, 3, 5] * 5, e=[4, 3, 2, 3] * 5, d=[4, 3, 2, 3, 4], image_size=224)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def moofa_supernet():
    return mnn.Supernet("moofa").eval()


@pytest.mark.benchmark(group="subnet-profile-moofa")
def test_cpp_profile(benchmark):
    p = benchmark(moofa.profile, NET, "moofa")
    assert p.peak == max(p.hist) and len(p.hist) == len(moofa.layer_names(NET, "moofa"))


@pytest.mark.benchmark(group="subnet-profile-moofa")
def test_extract_and_hooked_forward(benchmark, moofa_supernet):
    def run():
        return mnn.profile_memory(moofa_supernet.extract(NET), (1, 3, 224, 224))

    hooked = benchmark(run)
    computed = moofa.profile(NET, "moofa")
    assert (hooked.peak, hooked.hist, hooked.params) == (computed.peak, computed.hist, computed.params)


@pytest.fixture(scope="module")
def tiny_step():
    space = mtrain.load_config("digits-tiny").space_obj()
    sup = mnn.Supernet(space).train()
    net = sup.random_subnets(1, seed=0)[0]
    sup.set_active_subnet(net)
    sub = sup.extract(net).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 40, 40, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    return sup, sub, x, y


def _step(model, x, y):
    # lr 0: the weights (and so every round) stay the same, the work is a full SGD step.
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    torch.manual_seed(0)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


@pytest.mark.benchmark(group="train-step-digits-tiny")
def test_elastic_supernet_step(benchmark, tiny_step):
    sup, sub, x, y = tiny_step
    loss = benchmark(_step, sup, x, y)
    assert loss == pytest.approx(_step(sub, x, y), rel=1e-5)


@pytest.mark.benchmark(group="train-step-digits-tiny")
def test_extracted_subnet_step(benchmark, tiny_step):
    sup, sub, x, y = tiny_step
    loss = benchmark(_step, sub, x, y)
    assert loss == pytest.approx(_step(sup, x, y), rel=1e-5)
