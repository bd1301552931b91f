"""moofa.data: image folders (with bad input), the built-in digits, elastic-resolution batches."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("sklearn")

from moofa import data as mdata  # noqa: E402


@pytest.fixture(scope="module")
def digits_train():
    return mdata.Digits("train")


def test_digits_are_real_and_split_without_overlap(digits_train):
    val = mdata.Digits("val")
    assert len(digits_train) + len(val) == 1797
    # Stratified: every 5th image of each class is held out.
    for c in range(10):
        n_val, n_train = val.targets.count(c), digits_train.targets.count(c)
        assert n_val == (n_val + n_train) // 5
    assert digits_train.images.dtype == torch.uint8 and digits_train.images.shape[1:] == (3, 8, 8)
    assert int(digits_train.images.max()) == 255

    # No image of the validation split appears in the training split.
    def key(img, t):
        return bytes(img[0].flatten().tolist()) + bytes([t])

    train_set = {key(img, t) for img, t in zip(digits_train.images, digits_train.targets)}
    dup = sum(key(img, t) in train_set for img, t in zip(val.images, val.targets))
    assert dup < 5  # a handful of digits are pixel-identical in the original data
    with pytest.raises(ValueError, match="split must be"):
        mdata.Digits("test")


def make_folder(root, dataset, per_class=3):
    for c in range(3):
        idx = [i for i, t in enumerate(dataset.targets) if t == c][:per_class]
        folder = root / str(c)
        folder.mkdir(parents=True)
        from PIL import Image

        for i in idx:
            Image.fromarray(dataset.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return root


def test_image_folder_reads_classes_and_images(tmp_path, digits_train):
    root = make_folder(tmp_path / "train", digits_train)
    ds = mdata.ImageFolder(root)
    assert ds.classes == ["0", "1", "2"] and len(ds) == 9 and ds.skipped == []
    img, label = ds[0]
    assert label == 0 and img.shape == (3, 8, 8) and img.dtype == torch.uint8
    assert torch.equal(img, digits_train.images[[i for i, t in enumerate(digits_train.targets) if t == 0][0]])


def test_unreadable_images_are_skipped_with_a_warning_and_counted(tmp_path, digits_train):
    root = make_folder(tmp_path / "train", digits_train)
    (root / "1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "2" / "empty.png").write_bytes(b"")
    with pytest.warns(mdata.UnreadableImageWarning, match="2 unreadable image"):
        ds = mdata.ImageFolder(root)
    assert len(ds) == 9 and ds.n_skipped == 2
    assert sorted(p.name for p in ds.skipped) == ["broken.jpg", "empty.png"]
    # A file that breaks after the scan is skipped at load time, and the batch goes on without it.
    path = ds.samples[0][0]
    path.write_bytes(b"gone")
    with pytest.warns(mdata.UnreadableImageWarning, match="unreadable image skipped"):
        batch = next(iter(mdata.make_loader(ds, 9, [16], train=False)))
    images, labels = batch
    assert images.shape == (8, 3, 16, 16) and ds.n_skipped == 3


def test_bad_data_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        mdata.ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no class folders"):
        mdata.ImageFolder(tmp_path / "empty")
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "notes.txt").write_text("no image here")
    with pytest.raises(ValueError, match=r"class folder\(s\) \['cat'\] hold no image"):
        mdata.ImageFolder(tmp_path / "noimg")
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat" / "x.png").write_bytes(b"junk")
    with (
        pytest.warns(mdata.UnreadableImageWarning),
        pytest.raises(ValueError, match="no readable image left"),
    ):
        mdata.ImageFolder(tmp_path / "bad")
    with pytest.raises(ValueError, match="has no 'train' folder"):
        mdata.load_dataset(tmp_path / "empty", "train")
    with pytest.raises(ValueError, match="data must be one of"):
        mdata.load_dataset("imagenet-please", "train")


def test_batches_have_one_elastic_resolution_and_are_reproducible(digits_train):
    def batches(epoch):
        loader = mdata.make_loader(digits_train, 16, [32, 40, 48], train=True, seed=3, epoch=epoch)
        return [b for _, b in zip(range(12), loader)]

    first, again, other = batches(0), batches(0), batches(1)
    sizes = [b[0].shape[-1] for b in first]
    assert set(sizes) <= {32, 40, 48} and len(set(sizes)) > 1
    for (x, y), (x2, y2) in zip(first, again):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))
    x, _ = first[0]
    assert x.shape[:2] == (16, 3) and x.shape[-1] == x.shape[-2]
    assert abs(float(x.mean())) < 3  # normalised


def test_resumed_epoch_continues_with_the_same_batches(digits_train):
    full = list(mdata.make_loader(digits_train, 32, [32, 40], seed=1, epoch=2))
    rest = list(mdata.make_loader(digits_train, 32, [32, 40], seed=1, epoch=2, start_batch=5))
    assert len(rest) == len(full) - 5
    for (x, y), (x2, y2) in zip(full[5:], rest):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_ranks_share_the_resolution_and_split_the_global_batch():
    ds = mdata.SyntheticImages(n=64, n_classes=4, size=12)

    def indices(rank):
        sampler = mdata._EpochBatches(
            len(ds), 4, seed=0, epoch=0, shuffle=True, drop_last=True, rank=rank, world_size=2
        )
        return list(sampler)

    r0, r1 = indices(0), indices(1)
    assert len(r0) == len(r1) == 8
    for b0, b1 in zip(r0, r1):
        i0, i1 = {i for i, _ in b0}, {i for i, _ in b1}
        assert not i0 & i1 and len(i0) == len(i1) == 4
        assert {s for _, s in b0} == {s for _, s in b1}  # same batch seed -> same resolution
    seen = sorted(i for b in r0 + r1 for i, _ in b)
    assert seen == list(range(64))


def test_random_resized_crop_box_stays_inside_and_respects_scale():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = mdata._random_resized_box(30, 50, rng, (0.2, 0.6), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50
        assert 0.15 * 1500 <= h * w <= 0.65 * 1500 or (h, w) == (30, 40)


def test_eval_batches_are_centre_crops():
    img = torch.zeros(3, 20, 20, dtype=torch.uint8)
    img[:, 5:15, 5:15] = 255
    collate = mdata.ElasticCollate([16], train=False, mean=(0, 0, 0), std=(1, 1, 1))
    x, y = collate([((img, 7), 0, 0, 0)])
    assert x.shape == (1, 3, 16, 16) and y.tolist() == [7]
    assert float(x[0, 0, 8, 8]) == pytest.approx(1.0) and float(x[0, 0, 0, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="crop scale"):
        mdata.ElasticCollate([16], scale=(0, 1))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        mdata.make_loader(mdata.SyntheticImages(n=3, n_classes=2, size=8), 4, [8])
