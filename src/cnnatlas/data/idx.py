"""A strict reader for the IDX files of MNIST and Fashion-MNIST, and the bundled MNIST sample.

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte big-endian magic number whose
first two bytes are zero, third byte the element type (0x08 = unsigned byte) and fourth byte
the number of dimensions; then one big-endian uint32 per dimension; then the elements,
row-major. MNIST images are magic 2051 (0x00000803: ubyte, 3 dims N×28×28), labels magic 2049
(0x00000801: ubyte, 1 dim N). Fashion-MNIST uses the same files and names.

Every check that fails raises :class:`~cnnatlas.errors.DataError` naming the file and what was
expected. Pixels are read with ``numpy.frombuffer`` (no per-sample Python), so the bundled
8,000-digit sample loads in tens of milliseconds.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnatlas.data.core import ArrayDataset, normalize_split, present, require_root
from cnnatlas.errors import DataError
from cnnatlas.safeio import open_regular

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension

_IDX_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}

#: Cap on the decompressed size of one .gz file. The largest legitimate file (60,000 MNIST
#: training images) is 47,040,016 bytes; the cap stops a gzip bomb long before memory runs out.
MAX_DECOMPRESSED_BYTES = 256 * 2**20
#: Cap on the size of an IDX file on disk (raw or gzip), checked before reading.
MAX_FILE_BYTES = 256 * 2**20

#: File stems per split, as distributed by LeCun et al. and Zalando (Fashion-MNIST).
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

MNIST_CLASSES = tuple(str(d) for d in range(10))
# Fashion-MNIST label names, from the data set's README (github.com/zalandoresearch/fashion-mnist).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class IdxSpec:
    """Per-data-set facts: class names, training-split statistics, where torchvision keeps files."""

    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Sub-folders of --root also searched, so a torchvision download (root/MNIST/raw) works as-is.
    subfolders: tuple[str, ...]


MNIST = IdxSpec(
    "mnist",
    MNIST_CLASSES,
    # Mean and std of the 60,000 MNIST training images in [0, 1] units: 0.1307 / 0.3081, the
    # constants of PyTorch's examples/mnist (0.13066 / 0.30811 computed over all pixels).
    mean=(0.1307,),
    std=(0.3081,),
    subfolders=("MNIST/raw", "raw", "mnist"),
)
FASHION_MNIST = IdxSpec(
    "fashion-mnist",
    FASHION_MNIST_CLASSES,
    # Mean and std of the 60,000 Fashion-MNIST training images over all pixels (0.28604 / 0.35302).
    mean=(0.2860,),
    std=(0.3530,),
    subfolders=("FashionMNIST/raw", "raw", "fashion-mnist", "fashion_mnist"),
)
# Statistics of the bundled sample's own 8,000 training digits (tests/test_data.py recomputes
# them from the files, so the constants cannot drift from the data).
MNIST_SAMPLE = IdxSpec("mnist-sample", MNIST_CLASSES, mean=(0.1314,), std=(0.3090,), subfolders=())


# -- the strict parser -------------------------------------------------------------------------
def parse_idx_header(data: bytes, *, source: str, expected_magic: int, file_size: int) -> tuple[int, tuple[int, ...]]:
    """``(header length, shape)`` from the start of an IDX file of ``file_size`` bytes.

    Checks, in order: header present, magic number (which encodes the element type and the
    number of dimensions), every dimension positive, and the file length equal to header plus
    elements — shorter is a truncated file, longer is a file that is not what its header says.
    """
    if file_size < 4 or len(data) < 4:
        raise DataError(
            f"{source}: {file_size} bytes is too short for an IDX file "
            f"(expected a 4-byte magic number {expected_magic})"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{source}: {_describe_magic_mismatch(magic, expected_magic)}")
    ndim = expected_magic & 0xFF
    header_len = 4 + 4 * ndim
    if file_size < header_len or len(data) < header_len:
        raise DataError(
            f"{source}: truncated header: {file_size} bytes, expected at least {header_len} for {ndim} dimension sizes"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(size == 0 for size in shape[1:]):
        raise DataError(f"{source}: header gives a zero dimension in shape {shape}")
    expected_len = header_len + math.prod(shape)  # exact Python ints: no int64 wrap-around
    if file_size != expected_len:
        problem = "truncated" if file_size < expected_len else "longer than its header says"
        raise DataError(
            f"{source}: file is {problem}: {file_size} bytes, expected {expected_len} "
            f"(header shape {'×'.join(map(str, shape))})"
        )
    return header_len, shape


def parse_idx(data: bytes, *, source: str, expected_magic: int) -> np.ndarray:
    """Parse one IDX file held in ``data``; ``source`` names it in error messages (checks: see
    :func:`parse_idx_header`). Returns a read-only uint8 array of the header's shape (a view on
    ``data``, no copy)."""
    header_len, shape = parse_idx_header(data, source=source, expected_magic=expected_magic, file_size=len(data))
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _describe_magic_mismatch(magic: int, expected: int) -> str:
    want = (
        f"expected magic number {expected} "
        f"(0x{expected:08X}: {_IDX_TYPE_NAMES[(expected >> 8) & 0xFF]}, {expected & 0xFF} dimensions)"
    )
    if magic >> 16 != 0:
        return f"not an IDX file: magic number 0x{magic:08X}, {want}"
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    type_name = _IDX_TYPE_NAMES.get(type_code, "unknown type")
    if type_code != (expected >> 8) & 0xFF:
        return f"element type code 0x{type_code:02X} ({type_name}), {want}"
    return f"{ndim} dimensions in the header, {want}"


def read_file_bytes(path: Path, *, expected_magic: int | None = None) -> bytes:
    """The bytes of ``path``, gunzipped when it is gzip data (by content, not by name).

    Nothing large is read before it is known to be right: the file must be a regular file of
    at most :data:`MAX_FILE_BYTES` (checked with ``fstat``, so a FIFO or ``/dev/zero``
    fails at once), and for an uncompressed IDX file with ``expected_magic`` the header is read
    first and the length it implies compared with the file's size."""
    handle, size = open_regular(path, what="IDX file", max_bytes=MAX_FILE_BYTES)
    with handle:
        try:
            head = handle.read(4 + 4 * 3)
            if head[:2] != b"\x1f\x8b" and expected_magic is not None:
                parse_idx_header(head, source=str(path), expected_magic=expected_magic, file_size=size)
            raw = head + handle.read(size + 1 - len(head))
        except OSError as exc:
            raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=_BytesReader(raw)) as stream:
            data = stream.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise DataError(
            f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes, far more than any MNIST file"
        )
    return data


class _BytesReader:
    """A minimal read-only file object over bytes (io.BytesIO would copy them once more)."""

    def __init__(self, data: bytes) -> None:
        self._view, self._pos = memoryview(data), 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = self._view[self._pos : end].tobytes()
        self._pos = end
        return chunk


def images_and_labels(
    image_bytes: bytes, label_bytes: bytes, *, image_source: str, label_source: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse an image file and a label file that belong together and check them against each other."""
    images = parse_idx(image_bytes, source=image_source, expected_magic=IMAGES_MAGIC)
    labels = parse_idx(label_bytes, source=label_source, expected_magic=LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{image_source} holds {images.shape[0]} images but {label_source} holds {labels.shape[0]} labels: "
            "expected equal counts"
        )
    if images.shape[0] == 0:
        raise DataError(f"{image_source}: holds no images")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{image_source}: images are {images.shape[1]}×{images.shape[2]}, expected 28×28")
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataError(f"{label_source}: label {int(labels[bad])} at index {bad} is outside 0–{num_classes - 1}")
    # One copy each, out of the (read-only) file buffer into tensors the caller owns.
    image_tensor = torch.from_numpy(images.reshape(images.shape[0], 1, 28, 28).copy())
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    return image_tensor, label_tensor


# -- data sets ---------------------------------------------------------------------------------
def candidate_folders(spec: IdxSpec, root: Path) -> list[Path]:
    return [root] + [root / sub for sub in spec.subfolders]


def find_split_file(spec: IdxSpec, root: Path, stem: str) -> Path | None:
    """The first of ``stem`` / ``stem.gz`` found in the candidate folders (raw before gz)."""
    for folder in candidate_folders(spec, root):
        for name in (stem, stem + ".gz"):
            if present(folder / name):
                return folder / name
    return None


def idx_splits(spec: IdxSpec, root: str | os.PathLike | None) -> list[str]:
    """The splits whose two files are both present under ``root``."""
    folder = require_root(spec.name, root)
    return [split for split, stems in SPLIT_FILES.items() if all(find_split_file(spec, folder, s) for s in stems)]


def load_idx_dataset(spec: IdxSpec, root: str | os.PathLike | None, split: str) -> ArrayDataset:
    """Load one split of MNIST or Fashion-MNIST from ``root``; only that split's files are needed."""
    split = normalize_split(split)
    folder = require_root(spec.name, root)
    paths = []
    for stem in SPLIT_FILES[split]:
        path = find_split_file(spec, folder, stem)
        if path is None:
            looked = ", ".join(str(f) for f in candidate_folders(spec, folder))
            raise DataError(
                f"{spec.name} {split} split: file {stem}[.gz] not found (looked in {looked}); "
                "nothing is downloaded - put the IDX files there yourself (see docs/data.md)"
            )
        paths.append(path)
    image_path, label_path = paths
    images, labels = images_and_labels(
        read_file_bytes(image_path, expected_magic=IMAGES_MAGIC),
        read_file_bytes(label_path, expected_magic=LABELS_MAGIC),
        image_source=str(image_path),
        label_source=str(label_path),
        num_classes=len(spec.classes),
    )
    return ArrayDataset(spec.name, split, images, labels, spec.classes, spec.mean, spec.std)


def load_mnist_sample(split: str) -> ArrayDataset:
    """The bundled 8,000 + 1,000 real MNIST digits (provenance: data/mnist_sample/README.md)."""
    split = normalize_split(split)
    package = importlib.resources.files("cnnatlas.data").joinpath("mnist_sample")
    blobs = []
    for stem in SPLIT_FILES[split]:
        resource = package.joinpath(stem + ".gz")
        try:
            compressed = resource.read_bytes()
        except OSError:
            raise DataError(
                f"the bundled mnist-sample file {stem}.gz is missing from the installed package ({resource})"
            ) from None
        try:
            blobs.append(gzip.decompress(compressed))
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"the bundled mnist-sample file {stem}.gz is corrupt ({exc})") from None
    images, labels = images_and_labels(
        blobs[0],
        blobs[1],
        image_source=f"mnist-sample/{SPLIT_FILES[split][0]}.gz",
        label_source=f"mnist-sample/{SPLIT_FILES[split][1]}.gz",
        num_classes=10,
    )
    return ArrayDataset(
        MNIST_SAMPLE.name, split, images, labels, MNIST_SAMPLE.classes, MNIST_SAMPLE.mean, MNIST_SAMPLE.std
    )
