"""The accuracy predictor co-trained during progressive shrinking (moofa.train.cotrain): the
trained supernet is unchanged bit for bit, the records are the subnets each phase trains, with
peaks from the independent oracle and top-1 recomputed outside the co-trainer, an interrupted
run resumes to the same records, and the predictor is refit, balanced by bin, per phase."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import oracle
import pytest
from conftest import read_jsonl

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import moofa  # noqa: E402
import moofa.nn as mnn  # noqa: E402
from moofa import train as mtrain  # noqa: E402
from moofa.predictor_train import balance_by_bin  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PHASES = [
    {"name": "teacher", "epochs": 1, "lr": 0.2},
    {"name": "kernel", "epochs": 1, "lr": 0.06, "kernels": "all"},
    {
        "name": "expand",
        "epochs": 2,
        "lr": 0.04,
        "subnets_per_step": 3,
        "kernels": "all",
        "depths": "all",
        "expands": "all",
    },
]


def quick_config(**overrides):
    base = dict(
        phases=PHASES,
        steps_per_epoch=3,
        batch_size=16,
        calib_batches=1,
        val_batches=1,
        val_batch_size=64,
        log_every=1,
        checkpoint_every=2,
        cotrain_every=1,
        cotrain_subnets=2,
        cotrain_bins=4,
        cotrain_predictor_epochs=30,
    )
    base.update(overrides)
    return mtrain.load_config("digits-tiny", **base)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted co-trained run."""
    workdir = tmp_path_factory.mktemp("cotrain") / "a"
    result = mtrain.train(quick_config(), workdir, progress=False)
    return workdir, result


def test_cotraining_leaves_the_supernet_unchanged_and_records_trained_subnets(straight, tmp_path):
    workdir, result = straight
    cfg = quick_config()
    plain = mtrain.train(quick_config(cotrain_every=0), tmp_path / "plain", progress=False)
    assert plain.global_step == result.global_step == 3 * 4
    a = mnn.Supernet.load(workdir / "supernet").state_dict()
    b = mnn.Supernet.load(tmp_path / "plain" / "supernet").state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert not (tmp_path / "plain" / "cotrain.jsonl").exists()

    records = read_jsonl(workdir / "cotrain.jsonl")
    space = cfg.space_obj()
    # No record in the teacher phase (nothing elastic); 1 candidate per kernel step, 3 per expand step.
    by_phase = Counter(r["phase"] for r in records)
    assert by_phase == {"kernel": 3, "expand": 2 * 6}
    for r in records:
        assert r["image_size"] in space.resolutions
        peak = oracle.evaluate(space, r["ks"], r["e"], r["d"], r["image_size"])["peak"]
        assert r["peak_memory"] == peak
        if r["phase"] == "kernel":  # depth and expand still at their largest
            assert set(r["d"]) == {max(space.depths)} and set(r["e"]) == {max(space.expands)}
    for phase in ("kernel", "expand"):
        keys = [json.dumps([r["ks"], r["e"], r["d"], r["image_size"]]) for r in records if r["phase"] == phase]
        assert len(keys) == len(set(keys))  # never the same subnet twice in a phase

    # The last step's records were measured with the final weights: recompute their top-1
    # outside the co-trainer (extract, recalibrate on the seeded batches, count right answers).
    from moofa.data import load_dataset, make_loader
    from moofa.nn.calibrate import recalibrate_bn

    supernet = mnn.Supernet.load(workdir / "supernet")
    train_set, val_set = load_dataset("digits", "train"), load_dataset("digits", "val")
    last = [r for r in records if r["global_step"] == result.global_step]
    assert len(last) == 2
    for r in last:
        res = r["image_size"]
        calib = make_loader(train_set, 16, [res], train=True, seed=cfg.seed + 2, scale=cfg.crop_scale)
        model = supernet.extract(moofa.Subnet.from_dict(r))
        recalibrate_bn(model, [next(iter(calib))[0]])
        images, labels = next(iter(make_loader(val_set, 64, [res], train=False)))
        with torch.no_grad():
            top1 = 100.0 * float((model.eval()(images).argmax(1) == labels).float().mean())
        assert r["top1"] == pytest.approx(top1, abs=1e-9)

    # The predictor refit at the end of the expand phase (the kernel phase had too few records).
    assert not (workdir / "predictor-kernel.npz").exists()
    pred = moofa.load_predictor(workdir / "predictor.npz", space=space)
    meta = json.loads((workdir / "predictor-expand.json").read_text())
    expand = [r for r in records if r["phase"] == "expand"]
    per_bin = np.bincount([r["bin"] for r in expand], minlength=4).tolist()
    assert meta["cotrain"]["per_bin"] == per_bin and meta["cotrain"]["records"] == len(expand) == 12
    assert meta["cotrain"]["balanced_records"] == max(per_bin) * sum(1 for n in per_bin if n)
    assert np.all(np.isfinite(pred.predict([moofa.Subnet.from_dict(r) for r in expand])))
    cot = [m for m in result.metrics if m["kind"] == "cotrain"]
    assert [(m["phase"], m["records"], m["predictor"]) for m in cot] == [
        ("teacher", 0, False),
        ("kernel", 3, False),
        ("expand", 12, True),
    ]


def test_interrupted_cotraining_resumes_to_the_same_records(tmp_path):
    # Measurements every 3 steps: the checkpoint at step 8 holds the candidates of steps 7-8.
    cfg = quick_config(cotrain_every=3, cotrain_subnets=6)
    workdir = tmp_path / "a"
    result = mtrain.train(cfg, workdir, progress=False)

    class Stop(Exception):
        pass

    def stop_at(step):
        def hook(record):
            if record["global_step"] == step:
                raise Stop

        return hook

    # Stopped one step after a checkpoint (step 8): that step's records are cut and redone,
    # and the candidates waiting at the checkpoint come back from it.
    with pytest.raises(Stop):
        mtrain.train(cfg, tmp_path / "b", progress=False, on_step=stop_at(9))
    ckpt = mtrain.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["global_step"] == 8 and len(ckpt["cotrain"]["pool"]) == 2 * 3  # 3 subnets a step
    with open(tmp_path / "b" / "cotrain.jsonl", "a") as f:
        f.write('{"ks": [3, 5')  # torn by the interruption
    resumed = mtrain.train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.global_step == result.global_step
    assert read_jsonl(tmp_path / "b" / "cotrain.jsonl") == read_jsonl(workdir / "cotrain.jsonl")
    assert Counter(r["phase"] for r in read_jsonl(workdir / "cotrain.jsonl")) == {"kernel": 3, "expand": 12}
    a = moofa.load_predictor(workdir / "predictor.npz", space=cfg.space_obj())
    b = moofa.load_predictor(tmp_path / "b" / "predictor.npz", space=cfg.space_obj())
    nets = moofa.random_subnets(50, cfg.space_obj(), seed=0)
    assert np.array_equal(a.predict(nets), b.predict(nets))


def test_balance_by_bin_gives_every_bin_the_same_weight():
    records = [{"bin": b, "i": i} for i, b in enumerate([0] * 7 + [1] * 2 + [3] * 3)]
    out = balance_by_bin(records, seed=1)
    assert Counter(r["bin"] for r in out) == {0: 7, 1: 7, 3: 7}
    for b in (0, 1, 3):  # every original kept, copies only from the same bin, spread evenly
        group = Counter(r["i"] for r in out if r["bin"] == b)
        originals = {r["i"] for r in records if r["bin"] == b}
        assert set(group) == originals and max(group.values()) - min(group.values()) <= 1
    assert out == balance_by_bin(records, seed=1) and balance_by_bin([]) == []
    with pytest.raises(ValueError, match="each hold 'bin'"):
        balance_by_bin([{"top1": 1.0}])


def test_cotrain_settings_are_checked():
    with pytest.raises(ValueError, match="cotrain_history must be 'phase'"):
        mtrain.load_config("digits-tiny", cotrain_history="last")
    with pytest.raises(ValueError, match="cotrain_subnets must be an integer >= 1"):
        mtrain.load_config("digits-tiny", cotrain_subnets=0)
    with pytest.raises(ValueError, match="cotrain_every must be an integer >= 0"):
        mtrain.load_config("digits-tiny", cotrain_every=-1)


@pytest.mark.slow
def test_cotraining_under_two_gloo_processes(tmp_path):
    """torchrun, 2 CPU processes: rank 0 measures while the other waits at the next step's
    all-reduce; the replicas stay in sync and the predictor is refit at the phases' ends."""
    import os
    import shutil
    import subprocess
    import sys

    config = tmp_path / "tiny.toml"
    text = (mtrain.CONFIG_DIR / "digits-tiny.toml").read_text()
    text = text.replace(
        "batch_size = 32",
        "batch_size = 8\nsteps_per_epoch = 3\ncalib_batches = 1\nval_batches = 1\n"
        "cotrain_every = 1\ncotrain_subnets = 2\ncotrain_predictor_epochs = 20",
    )
    config.write_text(text)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "moofa.train"]
    cmd += [str(config), "--workdir", str(tmp_path / "run"), "--no-progress", "--check-sync"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # A rare abort inside Gloo's own threads (not moofa's code): one fresh try.
        shutil.rmtree(tmp_path / "run")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    for r in (m for m in metrics if m["kind"] == "sync"):
        assert r["checksums"][0] == r["checksums"][1]
    records = read_jsonl(tmp_path / "run" / "cotrain.jsonl")
    # kernel: 2 epochs x 3 steps, 1 subnet a step; depth-1, depth-2, expand-1, expand-2: 2 a step.
    assert Counter(r["phase"] for r in records) == {
        "kernel": 6,
        "depth-1": 6,
        "depth-2": 12,
        "expand-1": 6,
        "expand-2": 12,
    }
    fitted = [m["phase"] for m in metrics if m["kind"] == "cotrain" and m["predictor"]]
    assert fitted == ["depth-2", "expand-2"]  # the phases with at least 10 records
    assert (tmp_path / "run" / "predictor-expand-2.npz").is_file()
