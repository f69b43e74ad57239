"""CIFAR-10 and CIFAR-100 from their python-version batches, read without running pickle code.

The batches (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html) are Python-2 pickles of
a dict: ``data`` a numpy uint8 array N×3072 (1024 red, then 1024 green, then 1024 blue values
of a 32×32 image, row-major), ``labels`` (CIFAR-10) or ``fine_labels``/``coarse_labels``
(CIFAR-100) lists of ints, plus ``batch_label`` and ``filenames``. The meta files hold the class
names.

A pickle can name any importable callable and have it called, so ``pickle.load`` on a file
someone handed you runs their code. :class:`RestrictedUnpickler` resolves only the handful of
globals those files name — numpy's array and dtype reconstruction, and ``_codecs.encode`` that
Python 3 emits for bytes in protocol 2 — and even those are not numpy's real functions but
inert stand-ins that only record their arguments; the arrays are then rebuilt here with
``numpy.frombuffer`` after checking dtype, shape and byte count. Any other global (``os.system``,
``builtins.eval``, ...) is refused with a DataError before anything runs.

When the files carry their standard names, their MD5 checksums (the constants torchvision 0.29
lists in ``torchvision/datasets/cifar.py``) are checked *before* unpickling; pass
``verify_checksums=False`` for re-packed copies.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnatlas.data.core import ArrayDataset, normalize_split, present, require_root
from cnnatlas.errors import DataError
from cnnatlas.safeio import open_regular


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str  # the folder the official tarball extracts to
    splits: dict[str, tuple[str, ...]]  # split -> batch file names
    meta_file: str
    class_key: str  # key of the class names in the meta file
    label_key: str  # key of the labels in a batch
    num_classes: int
    md5: dict[str, str]  # file name -> md5, from torchvision 0.29 torchvision/datasets/cifar.py
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec(
    name="cifar10",
    folder="cifar-10-batches-py",
    splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta_file="batches.meta",
    class_key="label_names",
    label_key="labels",
    num_classes=10,
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    # Per-channel mean and std over all pixels of the 50,000 CIFAR-10 training images.
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarSpec(
    name="cifar100",
    folder="cifar-100-python",
    splits={"train": ("train",), "test": ("test",)},
    meta_file="meta",
    class_key="fine_label_names",
    label_key="fine_labels",
    num_classes=100,
    md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    # Per-channel mean and std over all pixels of the 50,000 CIFAR-100 training images.
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)

#: Element types an array in a batch may have (CIFAR itself only uses uint8).
_ALLOWED_DTYPES = frozenset({"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"})


# -- restricted unpickling ---------------------------------------------------------------------
class _Inert:
    """Base of the stand-ins a pickle may name. ``__slots__ = ()`` leaves a pickle's BUILD opcode
    no attribute to set, so a crafted file cannot alter a stand-in for later loads."""

    __slots__ = ()


class _NdarrayType(_Inert):
    """Stands in for ``numpy.ndarray`` where a pickle names it as the class to reconstruct."""

    __slots__ = ()


_NDARRAY = _NdarrayType()


class _PickledDtype:
    """Records ``numpy.dtype(spec, align, copy)`` and its state instead of building a dtype."""

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, str) or spec.lstrip("<>|=") not in _ALLOWED_DTYPES:
            raise DataError(f"pickled array has element type {spec!r}; only plain numeric types are allowed")
        self.spec = spec
        self.byteorder = "|"

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise DataError("pickled dtype has an unexpected state")
        if any(part is not None for part in state[2:5]):
            raise DataError("pickled dtype is a structured or sub-array type; only plain numeric types are allowed")
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        return np.dtype(self.spec.lstrip("<>|=")).newbyteorder(self.byteorder if self.byteorder != "|" else "=")


class _PickledArray:
    """Records what numpy's ``_reconstruct`` + ``__setstate__`` (or ``_frombuffer``) would be given."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: _PickledDtype | None = None
        self.fortran = False
        self.raw: bytes | None = None

    def __setstate__(self, state: Any) -> None:
        # numpy's ndarray state: (version, shape, dtype, is_fortran, raw data); version optional.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise DataError("pickled array has an unexpected state")
        shape, dtype, fortran, raw = state
        self._set(shape, dtype, bool(fortran), raw)

    def _set(self, shape: Any, dtype: Any, fortran: bool, raw: Any) -> None:
        if (
            not isinstance(shape, tuple)
            or len(shape) > 8
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in shape)
        ):
            raise DataError(f"pickled array has an invalid shape {str(shape)[:80]} (at most 8 dimensions below 2**31)")
        if not isinstance(dtype, _PickledDtype):
            raise DataError("pickled array has no plain numeric dtype")
        if isinstance(raw, str):  # a Python-2 str read with encoding="latin1": the original bytes
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise DataError("pickled array data is not a byte string")
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, bytes(raw)

    def to_numpy(self, source: str) -> np.ndarray:
        if self.shape is None or self.dtype is None or self.raw is None:
            raise DataError(f"{source}: pickled array was never given its data")
        dtype = self.dtype.to_numpy()
        expected = math.prod(self.shape) * dtype.itemsize  # exact Python ints: no int64 wrap-around
        if len(self.raw) != expected:
            raise DataError(
                f"{source}: pickled array of shape {self.shape} needs {expected} bytes of data, has {len(self.raw)}"
            )
        return np.frombuffer(self.raw, dtype=dtype).reshape(self.shape, order="F" if self.fortran else "C")


class _Reconstruct(_Inert):
    """Stands in for numpy's ``_reconstruct(ndarray, shape, typecode)``: an empty array record."""

    __slots__ = ()

    def __call__(self, cls: Any, shape: Any = (0,), typecode: Any = b"b") -> _PickledArray:
        if cls is not _NDARRAY:
            raise DataError("pickle asks numpy to reconstruct something other than a plain ndarray")
        return _PickledArray()


class _FromBuffer(_Inert):
    """Stands in for numpy's ``_frombuffer(buf, dtype, shape, order)`` (pickle protocol 5)."""

    __slots__ = ()

    def __call__(self, buf: Any, dtype: Any, shape: Any, order: Any) -> _PickledArray:
        if isinstance(buf, pickle.PickleBuffer):
            buf = bytes(buf)
        array = _PickledArray()
        array._set(tuple(shape) if isinstance(shape, (tuple, list)) else shape, dtype, order == "F", buf)
        return array


class _DtypeFactory(_Inert):
    """Stands in for ``numpy.dtype``: records the type instead of building one."""

    __slots__ = ()

    def __call__(self, spec: Any, align: Any = False, copy: Any = False) -> _PickledDtype:
        return _PickledDtype(spec)


class _LatinEncode(_Inert):
    """Stands in for ``_codecs.encode``: Python 3 pickles bytes in protocol 2 as
    ``_codecs.encode(latin-1 text, "latin1")``; nothing else is accepted."""

    __slots__ = ()

    def __call__(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise DataError("pickle calls _codecs.encode with unexpected arguments")
        return text.encode("latin1")


#: The only globals a CIFAR batch may name, mapped to inert stand-ins (numpy 1 spells the module
#: ``numpy.core``, numpy 2 ``numpy._core``).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeFactory(),
    ("_codecs", "encode"): _LatinEncode(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS`, each to an inert stand-in."""

    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        # latin1: the batches were written by Python 2, whose str holds raw bytes.
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source}: refused to unpickle global '{module}.{name}': a CIFAR batch holds only "
                "numpy arrays, lists, strings and numbers, so this file is not one (nothing was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: pickle uses persistent ids, which a CIFAR batch never does")


#: Budget of the materialisation of one unpickled file. A CIFAR batch is one dict of five
#: entries: a 10,000×3072 array (30 MB) and lists of 10,000 labels and file names, so about
#: 20,000 objects and 31 MB. Shared references (a "billion laughs" pickle: a 1 KB file whose
#: lists repeat one list many times over) would expand far beyond both; counting every object
#: and byte as it is produced stops them at the budget instead of exhausting memory.
MAX_PICKLE_NODES = 1_000_000
MAX_PICKLE_BYTES = 512 * 2**20
#: Largest batch or meta file read (checked before reading): CIFAR-100's train file is 155 MB.
MAX_BATCH_FILE_BYTES = 512 * 2**20


class _Budget:
    """Objects and bytes produced so far by :func:`_materialize`, with the limits."""

    def __init__(self, source: str) -> None:
        self.source, self.nodes, self.bytes = source, 0, 0

    def spend(self, nbytes: int = 0) -> None:
        self.nodes += 1
        self.bytes += nbytes
        if self.nodes > MAX_PICKLE_NODES or self.bytes > MAX_PICKLE_BYTES:
            raise DataError(
                f"{self.source}: pickled data expands beyond {MAX_PICKLE_NODES:,} objects or "
                f"{MAX_PICKLE_BYTES // 2**20} MiB, far more than a CIFAR batch holds (shared references?)"
            )


def _materialize(obj: Any, budget: _Budget, depth: int = 0) -> Any:
    """Replace the stand-ins by numpy arrays and check that only plain data remains, within ``budget``."""
    source = budget.source
    if depth > 8:
        raise DataError(f"{source}: pickled data is nested deeper than a CIFAR batch")
    if isinstance(obj, _PickledArray):
        budget.spend(len(obj.raw or b""))
        return obj.to_numpy(source)
    if isinstance(obj, dict):
        budget.spend()
        result = {}
        for key, value in obj.items():
            if not isinstance(key, (str, bytes, int)) or isinstance(key, bool):
                raise DataError(f"{source}: pickled dict has a {type(key).__name__} key; a CIFAR batch has text keys")
            budget.spend(len(key) if isinstance(key, (str, bytes)) else 0)
            result[key] = _materialize(value, budget, depth + 1)
        return result
    if isinstance(obj, (list, tuple)):
        budget.spend(8 * len(obj))
        return [_materialize(v, budget, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (str, bytes, bytearray, int, float, bool)):
        budget.spend(len(obj) if isinstance(obj, (str, bytes, bytearray)) else 0)
        return obj
    raise DataError(f"{source}: pickled data holds an unexpected {type(obj).__name__}")


def restricted_load(path: Path) -> dict[str, Any]:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; the result must be a dict."""
    source = str(path)
    handle, _ = open_regular(path, what="CIFAR file", max_bytes=MAX_BATCH_FILE_BYTES)
    try:
        with handle:
            obj = RestrictedUnpickler(handle, source=source).load()
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(source) else f"{source}: {message}") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # a corrupt pickle can raise almost anything: report it as corrupt
        raise DataError(f"{source}: not a readable CIFAR python batch ({type(exc).__name__}: {exc})") from None
    obj = _materialize(obj, _Budget(source))
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, found {type(obj).__name__}")
    # Python-3 re-pickles may use bytes keys; the originals read with latin1 give str keys.
    return {k.decode("latin1") if isinstance(k, (bytes, bytearray)) else k: v for k, v in obj.items()}


# -- the data sets -----------------------------------------------------------------------------
def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    handle, _ = open_regular(path, what="CIFAR file", max_bytes=MAX_BATCH_FILE_BYTES)
    with handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_folder(spec: CifarSpec, root: Path) -> Path:
    """``root`` itself or ``root/<official folder name>``, whichever holds the meta file."""
    for folder in (root / spec.folder, root):
        if present(folder / spec.meta_file):
            return folder
    return root / spec.folder if (root / spec.folder).is_dir() else root


def cifar_splits(spec: CifarSpec, root: str | os.PathLike | None) -> list[str]:
    folder = find_folder(spec, require_root(spec.name, root))
    if not present(folder / spec.meta_file):
        return []
    return [split for split, names in spec.splits.items() if all(present(folder / n) for n in names)]


def _checked_file(spec: CifarSpec, folder: Path, file_name: str, verify_checksums: bool) -> Path:
    path = folder / file_name
    if not present(path):
        raise DataError(
            f"{spec.name}: file {file_name} not found in {folder} "
            f"(nor in {folder.parent if folder.name == spec.folder else folder / spec.folder}); "
            f"nothing is downloaded - extract the python version of the data set ({spec.folder}) there yourself "
            "(see docs/data.md)"
        )
    if verify_checksums:
        actual = _md5(path)
        if actual != spec.md5[file_name]:
            raise DataError(
                f"{path}: MD5 checksum {actual} does not match the official {spec.md5[file_name]}; the file is corrupt "
                "or not the original (to load a re-packed copy pass --data-option verify_checksums=false, "
                "or verify_checksums=False in Python)"
            )
    return path


def _read_batch(spec: CifarSpec, path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path)
    source = str(path)
    if "data" not in batch or spec.label_key not in batch:
        raise DataError(f"{source}: expected keys 'data' and {spec.label_key!r}, found {sorted(map(str, batch))}")
    data, labels = batch["data"], batch[spec.label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{source}: 'data' must be a uint8 array N×3072 (3×32×32 images), got {got}")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DataError(f"{source}: {spec.label_key!r} must be a list of integers")
    for index, value in enumerate(labels):  # before numpy: 2**70 would not even fit an int64
        if not 0 <= value < spec.num_classes:
            raise DataError(f"{source}: label {value} at index {index} is outside 0–{spec.num_classes - 1}")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.shape[0] != data.shape[0]:
        raise DataError(f"{source}: {data.shape[0]} images but {label_array.shape[0]} labels: expected equal counts")
    if label_array.size and (label_array.min() < 0 or label_array.max() >= spec.num_classes):
        bad = int(np.argmax((label_array < 0) | (label_array >= spec.num_classes)))
        raise DataError(f"{source}: label {int(label_array[bad])} at index {bad} is outside 0–{spec.num_classes - 1}")
    return data, label_array


def _read_classes(spec: CifarSpec, path: Path) -> tuple[str, ...]:
    meta = restricted_load(path)
    names = meta.get(spec.class_key)
    if (
        not isinstance(names, list)
        or len(names) != spec.num_classes
        or not all(isinstance(n, (str, bytes)) for n in names)
    ):
        raise DataError(f"{path}: expected {spec.num_classes} class names under {spec.class_key!r}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def load_cifar(
    spec: CifarSpec, root: str | os.PathLike | None, split: str, *, verify_checksums: bool = True
) -> ArrayDataset:
    """Load one split of CIFAR-10/100 from ``root`` (the extracted folder or its parent)."""
    split = normalize_split(split)
    folder = find_folder(spec, require_root(spec.name, root))
    # Check every file (existence, checksum) before unpickling any of them.
    meta_path = _checked_file(spec, folder, spec.meta_file, verify_checksums)
    batch_paths = [_checked_file(spec, folder, name, verify_checksums) for name in spec.splits[split]]
    classes = _read_classes(spec, meta_path)
    parts = [_read_batch(spec, path) for path in batch_paths]
    # np.concatenate copies out of the read-only pickle buffers into one array we own.
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if data.shape[0] == 0:
        raise DataError(f"{spec.name} {split} split in {folder} holds no images")
    # Each row is 1024 red, 1024 green, 1024 blue values: exactly C×H×W order.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return ArrayDataset(spec.name, split, images, torch.from_numpy(labels), classes, spec.mean, spec.std)
