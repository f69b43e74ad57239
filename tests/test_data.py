"""The data catalog, the bundled MNIST sample, the strict IDX reader, and synthetic data (docs/data.md)."""

from __future__ import annotations

import gzip
import importlib.resources
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnatlas.data import ArrayDataset, dataset_splits, list_datasets, load_dataset
from cnnatlas.data.idx import MAX_DECOMPRESSED_BYTES
from cnnatlas.errors import DataError, InputError

SAMPLE_DIR = importlib.resources.files("cnnatlas.data").joinpath("mnist_sample")
SAMPLE_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# -- helpers: IDX files written byte by byte, independently of the reader under test ----------
def idx_images(images: np.ndarray, *, magic: int = 2051) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, *, magic: int = 2049) -> bytes:
    return struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, blob in (
        (f"{prefix}-images-idx3-ubyte", idx_images(images)),
        (f"{prefix}-labels-idx1-ubyte", idx_labels(labels)),
    ):
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / stem).write_bytes(blob)


def random_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


# -- catalog -----------------------------------------------------------------------------------
def test_list_datasets_names_every_documented_data_set() -> None:
    # The names docs/data.md documents.
    assert list_datasets() == sorted(
        [
            "mnist-sample",
            "cluttered-mnist",
            "cluttered-mnist-1k",
            "mnist",
            "fashion-mnist",
            "cifar10",
            "cifar100",
            "imagefolder",
            "synthetic",
        ]
    )


def test_unknown_data_set_suggests_close_names() -> None:
    with pytest.raises(InputError, match=r"unknown data set 'cifar1'.*did you mean.*cifar10"):
        load_dataset("cifar1")
    with pytest.raises(InputError, match="fashion-mnist"):
        load_dataset("fashion-mnst")


def test_aliases_and_val_split() -> None:
    assert load_dataset("MNIST_sample", split="val").split == "test"


def test_bad_split_and_unknown_option_are_input_errors() -> None:
    with pytest.raises(InputError, match="split"):
        load_dataset("mnist-sample", split="validation-set")
    with pytest.raises(InputError, match="num_samples"):
        load_dataset("mnist-sample", num_samples=10)
    # None counts as "not given", so a caller may pass through unset options.
    assert len(load_dataset("mnist-sample", split="test", verify_checksums=None)) == 1000


def test_file_backed_data_sets_need_a_root() -> None:
    with pytest.raises(DataError, match="root"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", root="/nonexistent/cnnatlas-data")


# -- the bundled sample ------------------------------------------------------------------------
def test_mnist_sample_counts_and_types() -> None:
    train, test = load_dataset("mnist-sample"), load_dataset("mnist-sample", split="test")
    # 8,000 training and 1,000 test digits: src/cnnatlas/data/mnist_sample/README.md.
    assert (len(train), len(test)) == (8000, 1000)
    for ds in (train, test):
        assert isinstance(ds, ArrayDataset)
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (1, 28, 28)
        assert ds.images.is_contiguous() and ds.images.device.type == "cpu"
        assert ds.labels.dtype == torch.int64 and ds.num_classes == 10
        assert ds.classes == tuple("0123456789")
    # Per-class counts of the training part, digits 0-9: mnist_sample/README.md.
    assert torch.bincount(train.labels, minlength=10).tolist() == [808, 885, 800, 794, 780, 684, 815, 875, 775, 784]
    assert int(test.labels.min()) >= 0 and int(test.labels.max()) <= 9


def test_mnist_sample_statistics_are_those_of_its_training_split() -> None:
    train, test = load_dataset("mnist-sample"), load_dataset("mnist-sample", split="test")
    pixels = train.images.double() / 255
    assert train.mean[0] == pytest.approx(pixels.mean().item(), abs=5e-5)
    assert train.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=5e-5)
    # The test split is normalised with the training statistics, not its own.
    assert (test.mean, test.std) == (train.mean, train.std)


def test_mnist_sample_keeps_its_provenance_note() -> None:
    readme = SAMPLE_DIR.joinpath("README.md").read_text()
    assert "MIT" in readme and "Juan Cazala" in readme and "LeCun" in readme


def test_mnist_sample_matches_torchvisions_mnist_reader(tmp_path: Path) -> None:
    # torchvision's MNIST reader is an independent parser of the same IDX files: the bundled
    # files, read both ways, must give identical pixels and labels.
    from torchvision.datasets import MNIST

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in SAMPLE_FILES:
        (raw / stem).write_bytes(gzip.decompress(SAMPLE_DIR.joinpath(stem + ".gz").read_bytes()))
    for split, train in (("train", True), ("test", False)):
        reference = MNIST(str(tmp_path), train=train, download=False)
        ours = load_dataset("mnist-sample", split=split)
        assert torch.equal(ours.images[:, 0], reference.data)
        assert torch.equal(ours.labels, reference.targets)
        # ... and our mnist loader finds torchvision's layout (root/MNIST/raw) by itself.
        assert torch.equal(load_dataset("mnist", root=tmp_path, split=split).images, ours.images)


# -- the strict IDX reader ---------------------------------------------------------------------
def test_gz_and_raw_files_load_identically(tmp_path: Path) -> None:
    images, labels = random_digits(12)
    write_split(tmp_path / "raw", "t10k", images, labels)
    write_split(tmp_path / "gz", "t10k", images, labels, gz=True)
    a = load_dataset("mnist", root=tmp_path / "raw", split="test")
    b = load_dataset("mnist", root=tmp_path / "gz", split="test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.images[:, 0], torch.from_numpy(images)) and a.labels.tolist() == labels.tolist()


def test_only_test_files_present_test_loads_train_is_unavailable(tmp_path: Path) -> None:
    images, labels = random_digits(5)
    write_split(tmp_path, "t10k", images, labels, gz=True)
    assert dataset_splits("mnist", tmp_path) == ["test"]
    assert len(load_dataset("fashion-mnist", root=tmp_path, split="test")) == 5
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte.*not found.*looked in .*" + str(tmp_path) + r".*nothing is downloaded",
    ):
        load_dataset("mnist", root=tmp_path, split="train")


def _load_crafted(tmp_path: Path, image_blob: bytes, label_blob: bytes) -> ArrayDataset:
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(image_blob)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(label_blob)
    return load_dataset("mnist", root=tmp_path, split="test")


@pytest.mark.parametrize(
    ("make_images", "make_labels", "message"),
    [
        # labels file where the images are expected: magic 2049 instead of 2051
        (
            lambda im, lb: idx_labels(lb),
            None,
            r"t10k-images-idx3-ubyte: 1 dimensions in the header, expected magic number 2051",
        ),
        (lambda im, lb: b"\x89PNG\r\n\x1a\n" + bytes(100), None, r"t10k-images-idx3-ubyte: not an IDX file"),
        # element type 0x0D (float32) instead of 0x08 (unsigned byte)
        (
            lambda im, lb: idx_images(im, magic=0x00000D03),
            None,
            r"element type code 0x0D \(float32\), expected magic number 2051",
        ),
        # wrong dimension count: a 2-dimensional images header
        (
            lambda im, lb: idx_images(im, magic=0x00000802),
            None,
            r"2 dimensions in the header, expected magic number 2051",
        ),
        (
            lambda im, lb: idx_images(im)[:-1],
            None,
            r"t10k-images-idx3-ubyte: file is truncated: 3151 bytes, expected 3152",
        ),
        (lambda im, lb: idx_images(im)[:10], None, r"truncated header"),
        (lambda im, lb: idx_images(im) + b"\0", None, r"longer than its header says"),
        (None, lambda im, lb: idx_labels(lb)[:-2], r"t10k-labels-idx1-ubyte: file is truncated"),
        (
            None,
            lambda im, lb: idx_labels(lb, magic=2051),
            r"t10k-labels-idx1-ubyte: 3 dimensions in the header, expected magic number 2049",
        ),
        (
            None,
            lambda im, lb: idx_labels(np.append(lb, 1)),
            r"holds 4 images but .*t10k-labels-idx1-ubyte holds 5 labels",
        ),
        (None, lambda im, lb: idx_labels(np.array([0, 10, 1, 2])), r"label 10 at index 1 is outside 0–9"),
        (lambda im, lb: idx_images(np.zeros((4, 32, 32))), None, r"images are 32×32, expected 28×28"),
    ],
)
def test_malformed_idx_files_are_data_errors_naming_the_file(
    tmp_path: Path, make_images, make_labels, message: str
) -> None:
    images, labels = random_digits(4)  # 4 images of 28×28: 16-byte header + 3136 bytes = 3152 bytes
    image_blob = make_images(images, labels) if make_images else idx_images(images)
    label_blob = make_labels(images, labels) if make_labels else idx_labels(labels)
    with pytest.raises(DataError, match=message):
        _load_crafted(tmp_path, image_blob, label_blob)


def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    images, labels = random_digits(4)
    blob = gzip.compress(idx_images(images))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(labels)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        load_dataset("mnist", root=tmp_path, split="test")


def test_gzip_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A lower cap stands in for the real one so the test stays small; the code path is the same.
    monkeypatch.setattr("cnnatlas.data.idx.MAX_DECOMPRESSED_BYTES", 1000)
    images, labels = random_digits(4)
    write_split(tmp_path, "t10k", images, labels, gz=True)
    with pytest.raises(DataError, match="decompresses to more than 1000 bytes"):
        load_dataset("mnist", root=tmp_path, split="test")
    assert MAX_DECOMPRESSED_BYTES > 47_040_016  # the full MNIST training images file must fit


def test_fashion_mnist_uses_its_class_names(tmp_path: Path) -> None:
    images, labels = random_digits(3)
    write_split(tmp_path / "FashionMNIST" / "raw", "train", images, labels)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    # Label names from the Fashion-MNIST README (github.com/zalandoresearch/fashion-mnist).
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.num_classes == 10


def test_mnist_loader_reads_a_copy_of_the_bundled_files_like_the_sample(tmp_path: Path) -> None:
    for stem in SAMPLE_FILES:
        shutil.copyfile(str(SAMPLE_DIR.joinpath(stem + ".gz")), tmp_path / (stem + ".gz"))
    assert dataset_splits("mnist", tmp_path) == ["train", "test"]
    assert torch.equal(load_dataset("mnist", root=tmp_path).images, load_dataset("mnist-sample").images)


# -- synthetic ---------------------------------------------------------------------------------
def test_synthetic_is_deterministic_per_seed_and_split() -> None:
    opts = dict(num_samples=64, image_size=(3, 16, 12), num_classes=7)
    a, b = load_dataset("synthetic", seed=3, **opts), load_dataset("synthetic", seed=3, **opts)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = load_dataset("synthetic", seed=4, **opts)
    assert not torch.equal(a.images, c.images)
    t = load_dataset("synthetic", seed=3, split="test", **opts)
    assert not torch.equal(a.images, t.images)
    assert a.images.shape == (64, 3, 16, 12) and a.images.dtype == torch.uint8
    assert a.num_classes == 7 and 0 <= int(a.labels.min()) and int(a.labels.max()) < 7
    assert len(a.mean) == 3


def test_synthetic_statistics_match_uniform_bytes() -> None:
    ds = load_dataset("synthetic", num_samples=512, image_size="1x32x32")
    pixels = ds.images.double() / 255
    assert pixels.mean().item() == pytest.approx(ds.mean[0], abs=3e-3)
    assert pixels.std().item() == pytest.approx(ds.std[0], abs=3e-3)


@pytest.mark.parametrize(
    "options", [dict(num_samples=0), dict(num_classes=-1), dict(image_size=(3, 0, 4)), dict(image_size="3x32")]
)
def test_synthetic_rejects_impossible_options(options: dict) -> None:
    with pytest.raises(InputError):
        load_dataset("synthetic", **options)
