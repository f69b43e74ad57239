"""A validation split carved from a training split, reproducible from ``(fraction, seed)``.

Settings (learning-rate plateaus, early stopping, any hyper-parameter a user compares) must be
chosen on data the model neither trains on nor is finally reported on. The papers held out a
validation set for this (He et al. 2015 §4.2: a 45k/5k split of CIFAR-10's training images);
the test split is only for the final figure.

The carve is a pure function of the training split's length, the fraction and the seed: a
permutation drawn from a CPU generator seeded with ``seed``, whose first ``round(n · fraction)``
indices are the validation images. The same call on the same data therefore gives the same
digits every time, whatever the run's own seed, so a run's config.json (``data.validation``)
is enough to rebuild it (``cnnatlas evaluate RUN --split val``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, TypeVar

import torch

from cnnatlas.data.core import ArrayDataset
from cnnatlas.errors import InputError

D = TypeVar("D")

#: How the carve is drawn, recorded next to the fraction and seed in a run's config.json.
CARVE_RULE = "randperm(n) with a CPU generator seeded by seed; the first round(n*fraction) indices are validation"


def validation_indices(num_samples: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_indices, val_indices)``, each sorted, that split ``range(num_samples)``.

    >>> train, val = validation_indices(8, 0.25, seed=0)
    >>> len(train), len(val), sorted(train.tolist() + val.tolist()) == list(range(8))
    (6, 2, True)
    """
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 <= fraction < 1):
        raise InputError(f"--val-fraction must be in [0, 1), got {fraction!r}")
    num_val = round(num_samples * fraction)
    if fraction > 0 and num_val < 1:
        raise InputError(
            f"--val-fraction {fraction:g} of {num_samples} training images is less than one image; "
            "use a larger fraction or 0 for no validation split"
        )
    if num_val >= num_samples:
        raise InputError(f"--val-fraction {fraction:g} leaves no training images out of {num_samples}")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(num_samples, generator=generator)
    return order[num_val:].sort().values, order[:num_val].sort().values


def subset(dataset: D, indices: torch.Tensor, split: str) -> D:
    """The images of ``dataset`` at ``indices`` (an ``ArrayDataset`` or a ``FolderDataset``),
    renamed to ``split``; the original is left unchanged."""
    if isinstance(dataset, ArrayDataset):
        return dataclasses.replace(
            dataset, split=split, images=dataset.images[indices].contiguous(), labels=dataset.labels[indices]
        )
    part: Any = copy.copy(dataset)
    part.samples = [dataset.samples[i] for i in indices.tolist()]
    part.targets = [label for _, label in part.samples]
    part.split = split
    return part


def carve_validation(dataset: D, fraction: float, seed: int) -> tuple[D, D | None]:
    """``(train_part, val_part)`` of a training split; ``val_part`` is ``None`` for fraction 0."""
    if fraction == 0:
        return dataset, None
    train_ids, val_ids = validation_indices(len(dataset), fraction, seed)  # type: ignore[arg-type]
    return subset(dataset, train_ids, "train"), subset(dataset, val_ids, "val")
