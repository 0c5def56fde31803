"""Datasets for gclab runs. Nothing here downloads: data is generated locally or read
from standard files the user already has under ``raw_dir``.

``load_dataset(name, ...)`` returns a frozen :class:`Dataset` of torch tensors.
Seeding: the data itself (generation, train/test split, subsets) follows
``options["data_seed"]`` if given, else ``seed``; label noise always follows ``seed`` on
its own stream, so a sweep can fix the data and still vary the noise.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# (input dim, outputs, default n_train, default n_test) of each dataset; teacher's d and k are options.
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "mnist1d": (40, 10, 4000, 1000),
    "digits": (64, 10, 1437, 360),
    "parabola": (1, 1, 10, 200),
    "teacher": (20, 10, 4000, 1000),
    "mnist": (784, 10, 60000, 10000),
    "cifar10": (3072, 10, 50000, 10000),
}
DATASETS = tuple(SHAPES)

# Distinct SeedSequence spawn keys so data, subsets and label noise never share a stream.
_STREAM_DATA, _STREAM_SUBSET, _STREAM_NOISE = 1, 2, 3


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not under ``raw_dir``; the message says where to put them."""


@dataclass(frozen=True, eq=False)  # tensors make field-wise == ambiguous
class Dataset:
    name: str
    x_train: torch.Tensor  # float32 features
    y_train: torch.Tensor  # int64 class indices (classification) or float32 (n, k)
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int  # k, the number of network outputs
    input_shape: tuple
    task: str  # "classification" | "regression"

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def _check_options(name: str, options: dict, allowed: tuple) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"{name}: unknown option(s) {', '.join(map(repr, unknown))}; valid: {valid}")


def _sizes(name, n_train, n_test, default_train, default_test, total=None):
    """Resolve requested sizes; with a finite pool (``total``) the test default shrinks."""
    n_train = default_train if n_train is None else int(n_train)
    if n_test is None:
        n_test = default_test if total is None else min(default_test, max(total - n_train, 0))
    n_test = int(n_test)
    if n_train < 1 or n_test < 0:
        raise ValueError(f"{name}: need n_train >= 1 and n_test >= 0, got {n_train}/{n_test}")
    if total is not None and n_train + n_test > total:
        raise ValueError(f"{name}: n_train + n_test = {n_train + n_test} exceeds the {total} examples available")
    return n_train, n_test


def _subset(x, y, n, rng, name, split):
    """Seeded subset; a permutation prefix, so smaller subsets nest inside larger ones."""
    if n is None or n == len(y):
        return x, y
    if n > len(y):
        raise ValueError(f"{name}: asked for {n} {split} examples, only {len(y)} available")
    idx = rng.permutation(len(y))[:n]
    return x[idx], y[idx]


# --------------------------------------------------------------------------- mnist1d

_MNIST1D_FIXED = ("num_samples", "train_split", "seed", "url")


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(num_samples: int, seed: int, extra: tuple):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # ObjectView of the package defaults
    for k, v in extra:
        setattr(args, k, list(v) if isinstance(v, tuple) else v)
    args.num_samples, args.seed = num_samples, seed
    args.train_split = 1.0  # we split ourselves, so sizes are exact
    # make_dataset (never get_dataset, which may download) reseeds the *global*
    # numpy/random RNGs; restore them so loading data cannot perturb the caller.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        ds = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = ds["x"].astype(np.float32), ds["y"].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_mnist1d(n_train, n_test, data_seed, options):
    from mnist1d.data import get_dataset_args

    # mnist1d is untyped: its inferred return type misses that as_dict=True gives a dict
    tunable = tuple(k for k in get_dataset_args(as_dict=True) if k not in _MNIST1D_FIXED)  # pyright: ignore[reportGeneralTypeIssues]
    _check_options("mnist1d", options, tunable)
    n_train, n_test = _sizes("mnist1d", n_train, n_test, *SHAPES["mnist1d"][2:])
    # make_dataset draws num_samples // 10 per class, so round up to a multiple of 10.
    # With seed=42 and 4000/1000 this reproduces the canonical MNIST-1D exactly.
    num = 10 * math.ceil((n_train + n_test) / 10)
    extra = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    x, y = _mnist1d_arrays(num, int(data_seed), extra)
    xtr, ytr = x[:n_train], y[:n_train]
    xte, yte = x[n_train : n_train + n_test], y[n_train : n_train + n_test]
    return xtr, ytr, xte, yte, 10, "classification"


# --------------------------------------------------------------------------- digits


def _load_digits(n_train, n_test, data_seed, options):
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    _check_options("digits", options, ())
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)  # pixel values are 0..16
    y = d.target.astype(np.int64)
    n_train, n_test = _sizes("digits", n_train, n_test, *SHAPES["digits"][2:], total=len(y))
    perm = _rng(data_seed, _STREAM_SUBSET).permutation(len(y))
    tr, te = perm[:n_train], perm[n_train : n_train + n_test]
    return x[tr], y[tr], x[te], y[te], 10, "classification"


# --------------------------------------------------------------------------- parabola


def _load_parabola(n_train, n_test, data_seed, options):
    # Fig. 1: a ReLU MLP fit to 10 evenly spaced points of y = x^2 on [-1, 1];
    # the test set is a dense grid of the same curve. Deterministic, seed unused.
    _check_options("parabola", options, ())
    n_train, n_test = _sizes("parabola", n_train, n_test, *SHAPES["parabola"][2:])
    xtr = np.linspace(-1.0, 1.0, n_train, dtype=np.float32)[:, None]
    xte = np.linspace(-1.0, 1.0, n_test, dtype=np.float32)[:, None]
    return xtr, xtr**2, xte, xte**2, 1, "regression"


# --------------------------------------------------------------------------- teacher


def _load_teacher(n_train, n_test, data_seed, options):
    allowed = ("input_dim", "n_classes", "teacher_width", "teacher_depth")
    _check_options("teacher", options, allowed)
    d = int(options.get("input_dim", SHAPES["teacher"][0]))
    k = int(options.get("n_classes", SHAPES["teacher"][1]))
    width = int(options.get("teacher_width", 64))
    depth = int(options.get("teacher_depth", 2))
    if d < 1 or k < 2 or width < 1 or depth < 0:
        raise ValueError(
            f"teacher: need input_dim >= 1, n_classes >= 2, teacher_width >= 1, "
            f"teacher_depth >= 0; got {d}, {k}, {width}, {depth}"
        )
    n_train, n_test = _sizes("teacher", n_train, n_test, *SHAPES["teacher"][2:])
    return _teacher_arrays(n_train, n_test, data_seed, d, k, width, depth)


# One fig2 run at init spent 0.35 s of its 0.5–1.4 s drawing this (the 20,000-example calibration sample);
# every run of a sweep with the same data_seed draws the same arrays, so a worker keeps them.
@functools.lru_cache(maxsize=4)
def _teacher_arrays(n_train, n_test, data_seed, d, k, width, depth):
    rng = _rng(data_seed, _STREAM_DATA)
    # The teacher is drawn first and calibrated on its own reference sample, so the
    # labelling function does not depend on n_train / n_test.
    layers, fan_in = [], d
    for _ in range(depth):  # ReLU layers, He-scaled so activations stay O(1) with depth
        layers.append(
            (rng.standard_normal((fan_in, width)) * math.sqrt(2.0 / fan_in), 0.1 * rng.standard_normal(width))
        )
        fan_in = width
    w_out = rng.standard_normal((fan_in, k)) / math.sqrt(fan_in)

    def logits(x):
        for w, b in layers:
            x = np.maximum(x @ w + b, 0.0)
        return x @ w_out

    # Shift the logits so each class wins on ~1/k of the input distribution; a raw random
    # teacher can give one class several times another's share.
    ref = logits(rng.standard_normal((20000, d)))
    offset = ref.mean(0)
    step = ref.std()
    for _ in range(200):
        share = np.bincount(np.argmax(ref - offset, 1), minlength=k) / len(ref)
        offset += step * (share - 1.0 / k)
    x = rng.standard_normal((n_train + n_test, d))
    y = np.argmax(logits(x) - offset, axis=1).astype(np.int64)
    x = x.astype(np.float32)
    x.setflags(write=False)
    y.setflags(write=False)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], k, "classification"


# --------------------------------------------------------------------------- mnist (IDX)

_MNIST_FILES = {
    "x_train": ("train-images-idx3-ubyte", (28, 28)),
    "y_train": ("train-labels-idx1-ubyte", ()),
    "x_test": ("t10k-images-idx3-ubyte", (28, 28)),
    "y_test": ("t10k-labels-idx1-ubyte", ()),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic 0x0000TTNN, NN big-endian int32 dims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # e.g. a truncated or non-gzip .gz
        raise ValueError(f"{path}: unreadable IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: size {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


@functools.lru_cache(maxsize=4)
def _mnist_arrays(paths: tuple, stamps: tuple):  # stamps: reload when a file changes
    out = {}
    for key, path in zip(_MNIST_FILES, paths):
        arr = read_idx(path)
        want = _MNIST_FILES[key][1]
        if arr.ndim != 1 + len(want) or arr.shape[1:] != want:
            raise ValueError(
                f"{path}: shape {arr.shape}, expected (n, {', '.join(map(str, want))})"
                if want
                else f"{path}: shape {arr.shape}, expected (n,)"
            )
        out[key] = arr
    for split in ("train", "test"):
        nx, ny = len(out[f"x_{split}"]), len(out[f"y_{split}"])
        if nx != ny:
            raise ValueError(
                f"mnist: {paths[0 if split == 'train' else 2]} has {nx} images but its labels file has {ny}"
            )
        if ny and out[f"y_{split}"].max() > 9:
            raise ValueError(f"{paths[1 if split == 'train' else 3]}: labels outside 0..9")
    return out


def _stamp(path) -> tuple:
    """Cache key part: a replaced or rewritten file invalidates the in-process cache."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _find(base: Path, name: str):
    for cand in (base / name, base / (name + ".gz")):
        if cand.is_file():
            return cand
    return None


def _load_mnist(n_train, n_test, data_seed, options, raw_dir):
    _check_options("mnist", options, ("flatten",))
    base = Path(raw_dir) / "mnist"
    found = {k: _find(base, fname) for k, (fname, _) in _MNIST_FILES.items()}
    missing = [f"{base / _MNIST_FILES[k][0]} (or .gz)" for k, p in found.items() if p is None]
    if missing:
        raise DatasetNotFoundError(
            f"mnist: missing {', '.join(missing)}; put the four MNIST IDX files "
            f"({', '.join(f for f, _ in _MNIST_FILES.values())}, optionally .gz) in {base}/ "
            f"— gclab never downloads data"
        )
    paths = tuple(str(p) for p in found.values())
    stamps = tuple(_stamp(p) for p in paths)
    a = _mnist_arrays(paths, stamps)
    rng = _rng(data_seed, _STREAM_SUBSET)
    xtr, ytr = _subset(a["x_train"], a["y_train"], n_train, rng, "mnist", "train")
    xte, yte = _subset(a["x_test"], a["y_test"], n_test, rng, "mnist", "test")
    shape = (784,) if options.get("flatten", True) else (1, 28, 28)

    def prep(x):
        return (x.astype(np.float32) / 255.0).reshape((len(x),) + shape)

    return prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64), 10, "classification"


# --------------------------------------------------------------------------- cifar10

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = _CIFAR_TRAIN + ("test_batch",)
# CIFAR's batches are pickles; allow only what a dict of bytes/lists/ndarrays needs so a
# stray file under data/raw cannot execute code when unpickled.
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected pickled object {module}.{name}")


def _read_cifar_batch(path: Path):
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a corrupt/foreign file
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (got {type(d).__name__}, expected dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"{path}: CIFAR-10 batch lacks b'data' or b'labels'")
    x, y = np.asarray(d["data"]), np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise ValueError(f"{path}: data {x.dtype}{x.shape} / labels {y.shape}, expected uint8 (n, 3072) and (n,)")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


@functools.lru_cache(maxsize=2)
def _cifar_arrays(folder: str, stamps: tuple):
    parts = [_read_cifar_batch(Path(folder) / f) for f in _CIFAR_FILES]
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    return xtr, ytr, parts[5][0], parts[5][1]


def _load_cifar10(n_train, n_test, data_seed, options, raw_dir):
    _check_options("cifar10", options, ("normalize", "flatten"))
    raw = Path(raw_dir)
    candidates = (raw / "cifar10" / "cifar-10-batches-py", raw / "cifar-10-batches-py")
    folder = next((c for c in candidates if all((c / f).is_file() for f in _CIFAR_FILES)), None)
    if folder is None:
        # Report against the folder the user seems to have started filling, else the primary.
        shown = next((c for c in candidates if c.is_dir()), candidates[0])
        missing = [str(shown / f) for f in _CIFAR_FILES if not (shown / f).is_file()]
        raise DatasetNotFoundError(
            f"cifar10: missing {', '.join(missing)}; put CIFAR-10's python batches "
            f"(data_batch_1..5, test_batch from cifar-10-python.tar.gz) in {candidates[0]}/ "
            f"— gclab never downloads data"
        )
    stamps = tuple(_stamp(folder / f) for f in _CIFAR_FILES)
    xtr, ytr, xte, yte = _cifar_arrays(str(folder), stamps)
    rng = _rng(data_seed, _STREAM_SUBSET)
    xtr, ytr = _subset(xtr, ytr, n_train, rng, "cifar10", "train")
    xte, yte = _subset(xte, yte, n_test, rng, "cifar10", "test")
    xtr = xtr.astype(np.float32) / 255.0
    xte = xte.astype(np.float32) / 255.0
    if options.get("normalize", False):
        # Per-channel statistics of the training set actually used (no test leakage).
        mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
        std = xtr.std(axis=(0, 2, 3), keepdims=True) + 1e-8
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if options.get("flatten", False):
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    return xtr, ytr, xte, yte, 10, "classification"


# --------------------------------------------------------------------------- public API


def apply_label_noise(y: np.ndarray, p: float, n_classes: int, seed: int) -> np.ndarray:
    """Give exactly round(p*n) examples a uniformly random *different* class."""
    y = np.array(y, dtype=np.int64, copy=True)
    n_flip = int(round(p * len(y)))
    if n_flip == 0:
        return y
    rng = _rng(seed, _STREAM_NOISE)
    idx = rng.choice(len(y), size=n_flip, replace=False)
    # Adding 1..k-1 modulo k is uniform over the other k-1 classes.
    y[idx] = (y[idx] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    return y


def _load_parts(name, n_train, n_test, data_seed, options, raw_dir):
    """(x_train, y_train, x_test, y_test, n_classes, task) of a known dataset, as its loader returns them."""
    if name == "mnist1d":
        return _load_mnist1d(n_train, n_test, data_seed, options)
    if name == "digits":
        return _load_digits(n_train, n_test, data_seed, options)
    if name == "parabola":
        return _load_parabola(n_train, n_test, data_seed, options)
    if name == "teacher":
        return _load_teacher(n_train, n_test, data_seed, options)
    if name == "mnist":
        return _load_mnist(n_train, n_test, data_seed, options, raw_dir)
    return _load_cifar10(n_train, n_test, data_seed, options, raw_dir)


def load_dataset(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    label_noise: float = 0.0,
    raw_dir="data/raw",
    **options,
) -> Dataset:
    """Load or generate dataset ``name`` (one of ``DATASETS``).

    ``label_noise`` p in [0, 1) relabels round(p * n_train) training examples with a
    uniformly random different class; the test set is untouched. Regression datasets
    (parabola) reject p > 0 rather than silently inventing a noise model.
    Options: ``data_seed`` (all datasets but parabola), mnist1d: any ``get_dataset_args``
    key except num_samples/train_split/seed/url; teacher: input_dim, n_classes,
    teacher_width, teacher_depth; mnist: flatten (default True); cifar10: normalize,
    flatten (both default False).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if not 0.0 <= float(label_noise) < 1.0:
        raise ValueError(f"{name}: label_noise must be in [0, 1), got {label_noise}")
    options = dict(options)
    data_seed = options.pop("data_seed", None)
    data_seed = seed if data_seed is None else data_seed

    xtr, ytr, xte, yte, k, task = _load_parts(name, n_train, n_test, data_seed, options, raw_dir)

    if label_noise > 0:
        if task != "classification":
            raise ValueError(f"{name}: label_noise applies to classification only, got {label_noise}")
        ytr = apply_label_noise(ytr, float(label_noise), k, seed)

    def t(a, dtype):  # copy: cached arrays are read-only and shared between calls
        return torch.tensor(np.asarray(a), dtype=dtype)

    ydtype = torch.int64 if task == "classification" else torch.float32
    return Dataset(
        name=name,
        x_train=t(xtr, torch.float32),
        y_train=t(ytr, ydtype),
        x_test=t(xte, torch.float32),
        y_test=t(yte, ydtype),
        n_classes=int(k),
        input_shape=tuple(xtr.shape[1:]),
        task=task,
    )
