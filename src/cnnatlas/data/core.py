"""The in-memory data set type and the small helpers every reader shares.

A data set that fits in memory (MNIST, CIFAR, the bundled sample, synthetic data) is one
:class:`ArrayDataset`: a single uint8 ``N×C×H×W`` tensor plus int64 labels. The trainer moves
that one tensor to the training device and augments whole batches there, so no reader ever
hands out per-sample Python objects on the hot path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import torch

from cnnatlas.errors import CnnAtlasError, DataError, InputError

T = TypeVar("T")

#: The two split names every reader understands. ``"val"`` is accepted as another name for
#: ``"test"``: image folders call their held-out part ``val/``, the other data sets ``test``.
SPLITS: tuple[str, ...] = ("train", "test")


def normalize_split(split: str) -> str:
    """``"train"`` or ``"test"`` (``"val"`` means ``"test"``); anything else is an InputError."""
    canonical = {"train": "train", "test": "test", "val": "test"}.get(str(split).lower())
    if canonical is None:
        raise InputError(f"unknown split {split!r}: expected 'train' or 'test' (or 'val', meaning 'test')")
    return canonical


def require_root(name: str, root: str | os.PathLike | None) -> Path:
    """The ``--root`` folder of a file-backed data set, which must exist."""
    if root is None:
        raise DataError(
            f"data set {name!r} reads files from a folder you provide: pass root=... (--root DIR); "
            "nothing is downloaded (see docs/data.md for where to get the files)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data set {name!r}: root folder {str(path)!r} does not exist or is not a folder")
    return path


def present(path: Path) -> bool:
    """``path`` names something other than a folder (a file, or a FIFO or device the reader will
    refuse with a message saying so, instead of "not found")."""
    return path.exists() and not path.is_dir()


@dataclass
class ArrayDataset:
    """A data set held in memory as one image tensor and one label tensor.

    ``images`` is uint8 ``N×C×H×W`` on the CPU and contiguous; ``labels`` is int64 ``N``.
    ``mean`` and ``std`` are per-channel statistics of the data set's *training* split in
    [0, 1] units, the same numbers whichever split was loaded, so that a model trained with
    them is evaluated with them.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        # Cheap structural checks: every reader goes through here, so a reader bug surfaces
        # as one clear message instead of a shape error deep inside the trainer.
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"{self.name}/{self.split}: images must be uint8 N×C×H×W, got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dtype != torch.int64 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{self.name}/{self.split}: labels must be int64 of length {images.shape[0]}, "
                f"got {labels.dtype} {tuple(labels.shape)}"
            )
        channels = images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(f"{self.name}/{self.split}: mean/std need {channels} values, one per channel")
        self.classes = tuple(self.classes)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if not images.is_contiguous():
            self.images = images.contiguous()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # Convenience for inspection and for generic DataLoader use; the trainer slices
        # ``images`` directly instead.
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        c, h, w = self.image_size
        return (
            f"ArrayDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_size=({c}, {h}, {w}), num_classes={self.num_classes})"
        )


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The error a DataLoader worker raised, with its own one-line message.

    PyTorch re-raises a worker's exception in the main process as the same type, but with a
    message of many lines ("Caught DataError in DataLoader worker process 0. Original
    Traceback …"). For our own errors the last line holds the original message; this returns
    an error of the same type with only that message (anything else is returned unchanged).
    """
    text = str(exc)
    if not isinstance(exc, CnnAtlasError) or "Original Traceback" not in text:
        return exc
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    lines = text.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(prefix):
            return type(exc)(" ".join([lines[index][len(prefix) :], *lines[index + 1 :]]).strip())
    return type(exc)(lines[-1].strip())


def iterate_loader(loader: Iterable[T]) -> Iterator[T]:
    """Iterate a DataLoader, turning a worker's error into our one-line error (:func:`unwrap_worker_error`)."""
    try:
        yield from loader
    except CnnAtlasError as exc:
        raise unwrap_worker_error(exc) from None
