"""Datasets: generated ones are deterministic; file-based ones read the exact standard
formats (written here in miniature) and fail with errors that say what to do."""

import gzip
import pickle
import random

import numpy as np
import pytest
import torch

from gclab.collect import datasets
from gclab.collect.datasets import DATASETS, SHAPES, Dataset, DatasetNotFoundError, load_dataset, read_idx

# ----------------------------------------------------------------------------- helpers

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path, arr: np.ndarray, gz: bool = False, magic_type: int = 0x08):
    """Standard IDX: 0x00 0x00 <type> <ndim>, big-endian int32 dims, then the data."""
    header = bytes([0, 0, magic_type, arr.ndim]) + np.asarray(arr.shape, ">i4").tobytes()
    data = header + arr.astype(">u1").tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_mnist(raw, n_train=50, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    folder = raw / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(MNIST_NAMES, arrays):
        write_idx(folder / name, arr, gz=gz)
    return arrays


def make_cifar(folder, n_per_batch=6, seed=0):
    """The python-version CIFAR-10 batches: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        d = {
            b"batch_label": name.encode(),
            b"labels": y,
            b"data": x,
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
        xs.append(x)
        ys.append(y)
    return xs, ys


# ----------------------------------------------------------------------------- mnist1d


def test_mnist1d_shapes_sizes_and_determinism():
    a = load_dataset("mnist1d", n_train=123, n_test=45, seed=0)
    assert isinstance(a, Dataset) and a.task == "classification" and a.n_classes == 10
    assert a.x_train.shape == (123, 40) and a.x_test.shape == (45, 40)
    assert a.input_shape == (40,)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert set(a.y_train.tolist()) <= set(range(10)) and len(set(a.y_train.tolist())) == 10
    b = load_dataset("mnist1d", n_train=123, n_test=45, seed=0)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_dataset("mnist1d", n_train=123, n_test=45, seed=1)
    assert not torch.equal(a.x_train, c.x_train)
    # data_seed pins the data while seed varies
    d = load_dataset("mnist1d", n_train=123, n_test=45, seed=5, data_seed=0)
    assert torch.equal(a.x_train, d.x_train)


def test_mnist1d_default_is_canonical_and_leaves_global_rng_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    expect_np, expect_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d", seed=42)  # 4000/1000, the package's own seed
    assert np.random.random() == expect_np and random.random() == expect_py
    ref = make_dataset(get_dataset_args())
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    np.testing.assert_array_equal(ds.x_train.numpy(), ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), ref["y_test"])


def test_mnist1d_rejects_unknown_option():
    with pytest.raises(ValueError, match="mnist1d: unknown option.*'bogus'"):
        load_dataset("mnist1d", n_train=10, n_test=10, bogus=1)


# ----------------------------------------------------------------------------- small generated sets


def test_digits_split():
    d = load_dataset("digits", seed=0)
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.x_train.min() >= 0 and d.x_train.max() == 1.0
    # Train and test are disjoint rows of the 1797 digits (compare as byte strings).

    def rows(x):
        return {r.tobytes() for r in x.numpy()}

    from sklearn.datasets import load_digits

    full = rows(torch.tensor(load_digits().data / 16.0, dtype=torch.float32))
    assert rows(d.x_train) | rows(d.x_test) <= full
    s = load_dataset("digits", n_train=100, n_test=50, seed=3)
    assert s.x_train.shape == (100, 64) and s.x_test.shape == (50, 64)
    assert torch.equal(s.x_train, load_dataset("digits", n_train=100, n_test=50, seed=3).x_train)
    assert not torch.equal(s.x_train, load_dataset("digits", n_train=100, n_test=50, seed=4).x_train)
    with pytest.raises(ValueError, match="exceeds the 1797"):
        load_dataset("digits", n_train=1700, n_test=200)


def test_parabola():
    d = load_dataset("parabola")
    assert d.task == "regression" and d.n_classes == 1 and d.input_shape == (1,)
    assert d.x_train.shape == (10, 1) and d.y_train.shape == (10, 1) and d.x_test.shape == (200, 1)
    assert d.y_train.dtype == torch.float32
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), np.linspace(-1, 1, 10), atol=1e-7)
    torch.testing.assert_close(d.y_train, d.x_train**2)
    torch.testing.assert_close(d.y_test, d.x_test**2)
    with pytest.raises(ValueError, match="classification only"):
        load_dataset("parabola", label_noise=0.1)


def test_teacher():
    d = load_dataset("teacher", n_train=300, n_test=100, seed=0, input_dim=7, n_classes=4)
    assert d.x_train.shape == (300, 7) and d.n_classes == 4 and d.input_shape == (7,)
    counts = torch.bincount(d.y_train, minlength=4)
    assert counts.min() > 300 / 4 * 0.6  # calibrated to roughly balanced classes
    # The labelling function does not depend on the requested sizes.
    e = load_dataset("teacher", n_train=150, n_test=100, seed=0, input_dim=7, n_classes=4)
    assert torch.equal(e.x_train, d.x_train[:150]) and torch.equal(e.y_train, d.y_train[:150])
    f = load_dataset("teacher", n_train=300, n_test=100, seed=1, input_dim=7, n_classes=4)
    assert not torch.equal(f.y_train, d.y_train)


def test_unknown_name_and_bad_noise():
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(e.value)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        load_dataset("teacher", label_noise=1.0)


# ----------------------------------------------------------------------------- label noise


@pytest.mark.parametrize("p", [0.0, 0.15, 0.5])
def test_label_noise_exact_fraction_and_reproducible(p):
    kw = dict(n_train=1000, n_test=200, seed=7, data_seed=0)
    clean = load_dataset("teacher", **kw)
    noisy = load_dataset("teacher", label_noise=p, **kw)
    flipped = noisy.y_train != clean.y_train
    assert int(flipped.sum()) == round(p * 1000)  # every chosen label really changes
    assert torch.equal(noisy.x_train, clean.x_train)
    assert torch.equal(noisy.y_test, clean.y_test) and torch.equal(noisy.x_test, clean.x_test)
    assert torch.equal(noisy.y_train, load_dataset("teacher", label_noise=p, **kw).y_train)
    if p > 0:
        other = load_dataset("teacher", label_noise=p, **{**kw, "seed": 8})
        assert not torch.equal(other.y_train, noisy.y_train)
        assert torch.equal(other.x_train, noisy.x_train)  # data pinned by data_seed


def test_label_noise_new_labels_cover_other_classes():
    clean = load_dataset("mnist1d", n_train=500, n_test=10, seed=0)
    noisy = load_dataset("mnist1d", n_train=500, n_test=10, seed=0, label_noise=0.4)
    idx = noisy.y_train != clean.y_train
    assert int(idx.sum()) == 200
    # Shift (new - old) mod 10 is uniform on 1..9: all nine shifts should occur.
    shifts = ((noisy.y_train[idx] - clean.y_train[idx]) % 10).unique().tolist()
    assert shifts == list(range(1, 10))


# ----------------------------------------------------------------------------- mnist (IDX)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx(tmp_path, gz):
    xtr, ytr, xte, yte = make_mnist(tmp_path, gz=gz)
    d = load_dataset("mnist", raw_dir=tmp_path)
    assert d.x_train.shape == (50, 784) and d.x_test.shape == (20, 784) and d.n_classes == 10
    np.testing.assert_allclose(d.x_train.numpy(), xtr.reshape(50, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_train.numpy(), ytr)
    np.testing.assert_allclose(d.x_test.numpy(), xte.reshape(20, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_test.numpy(), yte)
    img = load_dataset("mnist", raw_dir=tmp_path, flatten=False)
    assert img.x_train.shape == (50, 1, 28, 28) and img.input_shape == (1, 28, 28)


def test_mnist_subset_is_seeded_rows_of_the_file(tmp_path):
    xtr, ytr, _, _ = make_mnist(tmp_path)
    a = load_dataset("mnist", raw_dir=tmp_path, n_train=10, n_test=5, seed=1)
    b = load_dataset("mnist", raw_dir=tmp_path, n_train=10, n_test=5, seed=1)
    c = load_dataset("mnist", raw_dir=tmp_path, n_train=10, n_test=5, seed=2)
    assert a.x_train.shape == (10, 784) and a.x_test.shape == (5, 784)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    full = {(r.tobytes(), int(y)) for r, y in zip(xtr.reshape(50, -1), ytr)}
    for x, y in zip(a.x_train.numpy(), a.y_train.tolist()):
        assert (np.rint(x * 255).astype(np.uint8).tobytes(), y) in full
    with pytest.raises(ValueError, match="only 50 available"):
        load_dataset("mnist", raw_dir=tmp_path, n_train=51)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", raw_dir=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError) and "\n" not in msg
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte") in msg and "never downloads" in msg
    make_mnist(tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", raw_dir=tmp_path)
    assert str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte") in str(e.value)
    assert "train-images" not in str(e.value).split(";")[0]


def test_mnist_corrupt_files(tmp_path):
    make_mnist(tmp_path)
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte"
    raw = bytearray(bad.read_bytes())
    raw[2] = 0x42  # bad magic
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: not an IDX file"):
        load_dataset("mnist", raw_dir=tmp_path)
    raw[2] = 0x08
    bad.write_bytes(bytes(raw[:-7]))  # truncated
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: size"):
        load_dataset("mnist", raw_dir=tmp_path)
    write_idx(bad, np.zeros((49, 28, 28), np.uint8))  # labels file still has 50
    with pytest.raises(ValueError, match="49 images but its labels file has 50"):
        load_dataset("mnist", raw_dir=tmp_path)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", arr, gz=True)), arr)


# ----------------------------------------------------------------------------- cifar10


@pytest.mark.parametrize("layout", ["cifar10/cifar-10-batches-py", "cifar-10-batches-py"])
def test_cifar_reads_python_batches(tmp_path, layout):
    xs, ys = make_cifar(tmp_path / layout)
    d = load_dataset("cifar10", raw_dir=tmp_path)
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.input_shape == (3, 32, 32) and d.n_classes == 10
    np.testing.assert_allclose(d.x_train.numpy(), np.concatenate(xs[:5]).reshape(30, 3, 32, 32) / 255.0, rtol=1e-6)
    assert d.y_train.tolist() == sum(ys[:5], []) and d.y_test.tolist() == ys[5]
    # The 3072 bytes are channel-major: first 1024 are red, row by row.
    assert d.x_test[0, 1, 0, 0] == pytest.approx(xs[5][0, 1024] / 255.0)


def test_cifar_options_and_subset(tmp_path):
    make_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", n_per_batch=20)
    d = load_dataset("cifar10", raw_dir=tmp_path, normalize=True, n_train=60, n_test=10, seed=0)
    assert d.x_train.shape == (60, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    torch.testing.assert_close(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.x_train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    flat = load_dataset("cifar10", raw_dir=tmp_path, flatten=True)
    assert flat.x_train.shape == (100, 3072)


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", raw_dir=tmp_path)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1") in str(e.value)
    assert "\n" not in str(e.value)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    make_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3: not a CIFAR-10 python batch"):
        load_dataset("cifar10", raw_dir=tmp_path)


def test_cifar_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    make_cifar(folder)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="test_batch"):
        load_dataset("cifar10", raw_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["mnist1d", "digits", "parabola", "teacher"])
def test_shapes_table_matches_the_loaded_data(name):
    """SHAPES (which planted stores use for n_params) against what the loader returns at its defaults."""
    ds = load_dataset(name)
    got = (int(np.prod(ds.input_shape)), ds.n_classes, ds.n_train, ds.n_test)
    assert got == SHAPES[name]


def test_the_teacher_is_drawn_once_per_worker_and_every_load_gets_its_own_copy():
    # fig2's 780 runs at init share data_seed 42: the draw (0.35 s of a run) is cached, the tensors are not
    datasets._teacher_arrays.cache_clear()
    first = datasets.load_dataset("teacher", n_train=32, n_test=16, input_dim=20, n_classes=4)
    first.x_train.add_(1.0)  # a caller writing into its tensors must not reach the next load
    again = datasets.load_dataset("teacher", n_train=32, n_test=16, input_dim=20, n_classes=4)
    assert datasets._teacher_arrays.cache_info().hits == 1
    datasets._teacher_arrays.cache_clear()
    fresh = datasets.load_dataset("teacher", n_train=32, n_test=16, input_dim=20, n_classes=4)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, name), getattr(fresh, name)), name
    assert torch.equal(first.x_train, fresh.x_train + 1.0)  # its own write, the same float op
