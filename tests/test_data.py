import gzip
import io
import json
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from orchestrator import data as d

FASHION = d.FASHION_MNIST_DEBIAN


def _cifar_batch(rng: np.random.Generator, n: int) -> bytes:
    batch = {b"batch_label": b"training batch", b"labels": [int(x) for x in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return pickle.dumps(batch, protocol=2)


def make_cifar_archive(path: Path, per_batch: int = 20, corrupt: str | None = None) -> Path:
    """An archive in the exact layout of the official cifar-10-python.tar.gz."""
    rng = np.random.default_rng(1)
    members = {f"cifar-10-batches-py/data_batch_{i}": _cifar_batch(rng, per_batch) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = _cifar_batch(rng, per_batch)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    if corrupt == "truncated":
        members["cifar-10-batches-py/data_batch_3"] = members["cifar-10-batches-py/data_batch_3"][:100]
    if corrupt == "missing":
        del members["cifar-10-batches-py/test_batch"]
    if corrupt == "hostile":
        class Boom:
            def __reduce__(self):  # type: ignore[no-untyped-def]
                return (os.system, (f"touch {path.parent / 'pwned'}",))
        members["cifar-10-batches-py/data_batch_2"] = pickle.dumps(Boom(), protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_cifar10_archive_layout_is_read(tmp_path: Path) -> None:
    raw = d.load_cifar10(make_cifar_archive(tmp_path / "cifar-10-python.tar.gz"))
    assert raw.train_images.shape == (100, 3, 32, 32) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (20, 3, 32, 32) and raw.train_labels.dtype == np.int64
    # Row-major 3072 = R plane, G plane, B plane of 32x32 each.
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        first = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="bytes")  # type: ignore[union-attr]
    assert (raw.train_images[0, 1].ravel() == first[b"data"][0, 1024:2048]).all()


@pytest.mark.parametrize("corrupt, message", [
    ("truncated", "corrupt"), ("missing", "lacks cifar-10-batches-py/test_batch"), ("hostile", "unexpected type"),
])
def test_corrupt_cifar10_archives_give_clear_errors(tmp_path: Path, corrupt: str, message: str) -> None:
    archive = make_cifar_archive(tmp_path / "c.tar.gz", corrupt=corrupt)
    with pytest.raises(d.DataError, match=message):
        d.load_cifar10(archive)
    assert not (tmp_path / "pwned").exists()


def test_missing_and_non_archive_files(tmp_path: Path) -> None:
    with pytest.raises(d.DataError, match="nasloop data fetch cifar10"):
        d.load_cifar10(tmp_path / "absent.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(d.DataError, match="unreadable"):
        d.load_cifar10(tmp_path / "junk.tar.gz")


def test_fetch_verifies_md5_and_leaves_nothing_on_mismatch(tmp_path: Path) -> None:
    archive = make_cifar_archive(tmp_path / "source.tar.gz")
    url = archive.as_uri()
    with pytest.raises(d.DataError, match="MD5"):
        d.fetch_cifar10(tmp_path / "dl", url=url, md5="0" * 32)
    assert list((tmp_path / "dl").iterdir()) == []
    fetched = d.fetch_cifar10(tmp_path / "dl", url=url, md5=d.sources._md5(archive))
    assert fetched.read_bytes() == archive.read_bytes()


def test_prepare_splits_off_a_secret_holdout_and_keeps_labels_apart(tmp_path: Path) -> None:
    raw = d.load_cifar10(make_cifar_archive(tmp_path / "c.tar.gz"))
    prepared = d.prepare(raw, "cifar10", tmp_path / "data" / "cifar10", holdout_fraction=0.1, secret=3)
    m = prepared.meta
    assert (m.n_train, m.n_holdout, m.n_test) == (90, 10, 20) and m.in_shape == [1, 3, 32, 32]
    again = d.prepare(raw, "cifar10", tmp_path / "again" / "cifar10", holdout_fraction=0.1, secret=3)
    assert (prepared.array("holdout_images") == again.array("holdout_images")).all()
    train = {bytes(x) for x in np.asarray(prepared.array("train_images"))}
    assert not train & {bytes(x) for x in np.asarray(prepared.array("holdout_images"))}
    assert d.open_prepared(tmp_path / "data", "cifar10").meta == m
    assert sorted(p.name for p in prepared.root.iterdir()) == [
        "holdout_images.npy", "holdout_labels.npy", "meta.json", "secret.json", "test_images.npy",
        "test_labels.npy", "train_images.npy", "train_labels.npy"]
    # The metadata names the split by a fingerprint only; the secret stays in its own host-only file.
    meta_json = json.loads((prepared.root / "meta.json").read_text())
    assert "secret" not in meta_json and meta_json["split_id"] == d.prepared.split_id(3) != d.prepared.split_id(4)
    assert json.loads((prepared.root / "secret.json").read_text()) == {"secret": 3}
    assert (prepared.root / "secret.json").stat().st_mode & 0o077 == 0


def test_each_workspace_draws_its_own_secret_split(tmp_path: Path) -> None:
    """The hold-out (and synthetic data) cannot be regenerated from public code: two preparations
    without a given secret differ; the same secret reproduces the split."""
    first = d.ensure_prepared("synthetic", tmp_path / "a", tmp_path / "a" / "data", 0.1)
    second = d.ensure_prepared("synthetic", tmp_path / "b", tmp_path / "b" / "data", 0.1)
    assert first.meta.split_id != second.meta.split_id
    assert not (np.asarray(first.array("test_images")) == np.asarray(second.array("test_images"))).all()
    assert not (np.asarray(d.make_synthetic(seed=0).test_images) == np.asarray(first.array("test_images"))).all()
    secret = json.loads((first.root / "secret.json").read_text())["secret"]
    again = d.prepare_from("synthetic", None, tmp_path / "c", 0.1, secret)
    assert again.meta == first.meta
    assert (np.asarray(again.array("holdout_labels")) == np.asarray(first.array("holdout_labels"))).all()
    # Re-opening keeps the workspace's split (it is drawn once).
    assert d.ensure_prepared("synthetic", tmp_path / "a", tmp_path / "a" / "data", 0.1).meta == first.meta


def test_a_dataset_prepared_with_a_public_seed_must_be_prepared_again(tmp_path: Path) -> None:
    prepared = d.ensure_prepared("synthetic", tmp_path, tmp_path / "data", 0.1)
    meta = json.loads((prepared.root / "meta.json").read_text())
    meta["format_version"] = 1
    (prepared.root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(d.DataError, match="older nasloop"):
        d.open_prepared(tmp_path / "data", "synthetic")


def test_unprepared_dataset_says_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(d.DataError, match="nasloop data fetch cifar10"):
        d.open_prepared(tmp_path, "cifar10")
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "meta.json").write_text("{broken")
    with pytest.raises(d.DataError, match="corrupt"):
        d.open_prepared(tmp_path, "mnist")


def test_synthetic_is_deterministic_and_cifar_shaped() -> None:
    a, b = d.make_synthetic(seed=5), d.make_synthetic(seed=5)
    assert a.train_images.shape == (2000, 3, 32, 32) and a.test_images.shape == (1000, 3, 32, 32)
    assert (a.train_images == b.train_images).all() and (a.test_labels == b.test_labels).all()
    assert not (d.make_synthetic(seed=6).train_images == a.train_images).all()
    assert set(np.unique(a.train_labels)) == set(range(10))


def test_synthetic_is_learnable_in_one_epoch() -> None:
    torch = pytest.importorskip("torch")
    from sandbox.batches import TrainBatches, normalise

    raw = d.make_synthetic(seed=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.from_numpy(raw.train_images), torch.from_numpy(raw.train_labels)
    mean, std = [0.5] * 3, [0.45] * 3
    for x, y in TrainBatches(images, labels, 16, 0, mean, std, 4, True):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        predicted = net(normalise(torch.from_numpy(raw.test_images), m, s)).argmax(1).numpy()
    assert (predicted == raw.test_labels).mean() > 0.3  # chance is 0.1


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_its_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    raw = d.load_idx_dataset(tmp_path, "mnist")
    assert raw.train_images.shape == (30, 1, 28, 28) and raw.test_labels.shape == (10,)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">HBBI", 0, 8, 1, 10) + b"\x01" * 5)
    with pytest.raises(d.DataError, match="holds 5 bytes, expected 10"):
        d.load_idx_dataset(tmp_path, "mnist")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(d.DataError, match="lacks t10k-labels-idx1-ubyte"):
        d.load_idx_dataset(tmp_path, "mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_is_prepared(tmp_path: Path) -> None:
    prepared = d.ensure_prepared("fashion-mnist", tmp_path, tmp_path / "data", 0.1)
    m = prepared.meta
    assert (m.n_train, m.n_holdout, m.n_test) == (54000, 6000, 10000)
    assert m.in_shape == [1, 1, 28, 28] and m.num_classes == 10
    assert 0.2 < m.mean[0] < 0.4 and json.loads((prepared.root / "meta.json").read_text())["dataset"] == "fashion-mnist"


def test_a_training_subset_is_the_next_images_of_the_secret_order(tmp_path: Path) -> None:
    raw = d.load_cifar10(make_cifar_archive(tmp_path / "c.tar.gz"))
    full = d.prepare(raw, "cifar10", tmp_path / "data" / "cifar10", holdout_fraction=0.1, secret=5)
    subset = d.prepare(raw, "cifar10", tmp_path / "data" / d.prepared_name("cifar10", 30), 0.1, 5, train_subset=30)
    assert subset.root.name == "cifar10-train30" and d.prepared_name("cifar10") == "cifar10"
    assert (subset.meta.n_train, subset.meta.n_holdout, subset.meta.n_test) == (30, 10, 20)
    assert subset.meta.train_subset == 30 and full.meta.train_subset == 0
    # Same secret, same hold-out and test splits; the subset is drawn from the full training split.
    for name in ("holdout_images", "test_images"):
        assert (np.asarray(subset.array(name)) == np.asarray(full.array(name))).all()
    full_train = {bytes(x) for x in np.asarray(full.array("train_images"))}
    assert {bytes(x) for x in np.asarray(subset.array("train_images"))} <= full_train
    assert d.open_prepared(tmp_path / "data", "cifar10", 30).meta == subset.meta
    with pytest.raises(d.DataError, match="not prepared"):
        d.open_prepared(tmp_path / "data", "cifar10", 40)
    with pytest.raises(d.DataError, match="more than the 90 left"):
        d.prepare(raw, "cifar10", tmp_path / "x", 0.1, 5, train_subset=91)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_mini_profiles_fashion_mnist_subset_is_prepared_on_first_use(tmp_path: Path) -> None:
    from orchestrator.config import load_config

    data = load_config("mini").data
    prepared = d.ensure_prepared(data.dataset, tmp_path, tmp_path / "data", data.holdout_fraction, data.train_subset)
    m = prepared.meta
    assert (m.n_train, m.n_holdout, m.n_test) == (data.train_subset, 6000, 10000) and m.in_shape == [1, 1, 28, 28]
    assert prepared.root.name == f"fashion-mnist-train{data.train_subset}"
    assert np.bincount(np.asarray(prepared.array("train_labels")), minlength=10).min() > data.train_subset // 20
