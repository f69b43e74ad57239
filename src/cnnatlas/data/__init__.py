"""Data sets by name, read by strict readers; nothing is ever downloaded.

>>> from cnnatlas.data import load_dataset, list_datasets
>>> list_datasets()  # doctest: +NORMALIZE_WHITESPACE
['cifar10', 'cifar100', 'cluttered-mnist', 'cluttered-mnist-1k', 'fashion-mnist', 'imagefolder', 'mnist',
 'mnist-sample', 'synthetic']
>>> train = load_dataset("mnist-sample")
>>> len(train), tuple(train.images.shape[1:]), train.num_classes
(8000, (1, 28, 28), 10)
>>> load_dataset("synthetic", num_samples=4, image_size=(3, 8, 8), num_classes=2).images.shape
torch.Size([4, 3, 8, 8])

See docs/data.md for where each data set's files are expected and what is checked.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any, Callable

from cnnatlas.data.core import SPLITS, ArrayDataset, normalize_split
from cnnatlas.data.folder import FolderDataset
from cnnatlas.errors import InputError

__all__ = ["ArrayDataset", "FolderDataset", "load_dataset", "list_datasets", "dataset_splits", "dataset_description"]


@dataclass(frozen=True)
class _Entry:
    description: str
    needs_root: bool
    options: tuple[str, ...]
    load: Callable[..., ArrayDataset | FolderDataset]  # (root, split, **options)
    splits: Callable[[str | os.PathLike | None], list[str]]  # (root) -> available splits


def _mnist_sample(root: Any, split: str) -> ArrayDataset:
    from cnnatlas.data.idx import load_mnist_sample

    return load_mnist_sample(split)  # bundled: root is ignored


def _idx(spec_name: str) -> tuple[Callable[..., ArrayDataset], Callable[[Any], list[str]]]:
    def load(root: Any, split: str) -> ArrayDataset:
        from cnnatlas.data import idx

        return idx.load_idx_dataset(getattr(idx, spec_name), root, split)

    def splits(root: Any) -> list[str]:
        from cnnatlas.data import idx

        return idx.idx_splits(getattr(idx, spec_name), root)

    return load, splits


def _cifar(spec_name: str) -> tuple[Callable[..., ArrayDataset], Callable[[Any], list[str]]]:
    def load(root: Any, split: str, *, verify_checksums: bool = True) -> ArrayDataset:
        from cnnatlas.data import cifar

        return cifar.load_cifar(getattr(cifar, spec_name), root, split, verify_checksums=verify_checksums)

    def splits(root: Any) -> list[str]:
        from cnnatlas.data import cifar

        return cifar.cifar_splits(getattr(cifar, spec_name), root)

    return load, splits


def _imagefolder(root: Any, split: str, **options: Any) -> FolderDataset:
    return FolderDataset(root, split, **options)


def _imagefolder_splits(root: Any) -> list[str]:
    from cnnatlas.data.folder import folder_splits

    return folder_splits(root)


def _cluttered(train_size: int | None, name: str) -> Callable[..., ArrayDataset]:
    def load(root: Any, split: str, **options: Any) -> ArrayDataset:
        from cnnatlas.data.cluttered import make_cluttered

        options.setdefault("train_size", train_size)
        return make_cluttered(split, name=name, **options)  # generated from the bundled digits: root is ignored

    return load


_CLUTTERED_OPTIONS = ("canvas", "clutter", "seed", "train_size", "digits", "scale_jitter")


def _synthetic(root: Any, split: str, **options: Any) -> ArrayDataset:
    from cnnatlas.data.synthetic import make_synthetic

    return make_synthetic(split, **options)


_CATALOG: dict[str, _Entry] = {
    "mnist-sample": _Entry(
        "8,000 training + 1,000 test real MNIST digits bundled with cnnatlas",
        False,
        (),
        _mnist_sample,
        lambda root: list(SPLITS),
    ),
    "cluttered-mnist": _Entry(
        "the bundled digits translated on a 40×40 canvas among four 8×8 clutter fragments (generated, seeded)",
        False,
        _CLUTTERED_OPTIONS,
        _cluttered(None, "cluttered-mnist"),
        lambda root: list(SPLITS),
    ),
    "cluttered-mnist-1k": _Entry(
        "cluttered-mnist with only the first 1,000 training digits (the reduced-data regime)",
        False,
        _CLUTTERED_OPTIONS,
        _cluttered(1000, "cluttered-mnist-1k"),
        lambda root: list(SPLITS),
    ),
    "mnist": _Entry("MNIST IDX files (gz or raw) from --root", True, (), *_idx("MNIST")),
    "fashion-mnist": _Entry("Fashion-MNIST IDX files (gz or raw) from --root", True, (), *_idx("FASHION_MNIST")),
    "cifar10": _Entry(
        "CIFAR-10 python batches (cifar-10-batches-py) from --root", True, ("verify_checksums",), *_cifar("CIFAR10")
    ),
    "cifar100": _Entry(
        "CIFAR-100 python batches (cifar-100-python) from --root", True, ("verify_checksums",), *_cifar("CIFAR100")
    ),
    "imagefolder": _Entry(
        "--root with train/<class>/ and val/<class>/ image folders",
        True,
        ("transform", "max_pixels"),
        _imagefolder,
        _imagefolder_splits,
    ),
    "synthetic": _Entry(
        "random uint8 images and labels of any shape, for benchmarks",
        False,
        ("num_samples", "image_size", "num_classes", "seed"),
        _synthetic,
        lambda root: list(SPLITS),
    ),
}

# Spellings people type for the same data sets.
_ALIASES = {
    "mnist_sample": "mnist-sample",
    "mnistsample": "mnist-sample",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "image-folder": "imagefolder",
    "image_folder": "imagefolder",
    "cluttered_mnist": "cluttered-mnist",
    "cluttered-mnist1k": "cluttered-mnist-1k",
    "folder": "imagefolder",
}


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts, sorted."""
    return sorted(_CATALOG)


def _entry(name: str) -> tuple[str, _Entry]:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _CATALOG:
        close = difflib.get_close_matches(key, list(_CATALOG) + list(_ALIASES), n=3, cutoff=0.5)
        close = list(dict.fromkeys(_ALIASES.get(c, c) for c in close))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown data set {name!r}{hint} (known: {', '.join(list_datasets())})")
    return key, _CATALOG[key]


def dataset_description(name: str) -> str:
    """One line saying what the data set is and where it comes from."""
    return _entry(name)[1].description


def dataset_splits(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """The splits of ``name`` whose files are present under ``root`` (a subset of train, test)."""
    return _entry(name)[1].splits(root)


def load_dataset(
    name: str, *, root: str | os.PathLike | None = None, split: str = "train", **options: Any
) -> ArrayDataset | FolderDataset:
    """Load one split of a data set by name.

    ``root`` is the folder holding the files (ignored by ``mnist-sample`` and ``synthetic``);
    ``split`` is ``"train"`` or ``"test"`` (``"val"`` is the same as ``"test"``). ``options``
    are data-set specific (an option given as ``None`` counts as not given):
    ``cifar10``/``cifar100``: ``verify_checksums`` (default True); ``imagefolder``:
    ``transform``, ``max_pixels``; ``synthetic``: ``num_samples`` (1024), ``image_size``
    ((3, 32, 32) or "3x32x32"), ``num_classes`` (10), ``seed`` (0).

    Raises InputError for an unknown name, split or option, DataError for missing or bad files.
    """
    key, entry = _entry(name)
    split = normalize_split(split)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(entry.options))
    if unknown:
        accepted = ", ".join(entry.options) if entry.options else "none"
        raise InputError(f"data set {key!r} does not take option(s) {', '.join(unknown)} (accepted: {accepted})")
    return entry.load(root, split, **given)
