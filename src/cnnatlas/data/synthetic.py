"""Random images and labels of any shape and class count, for benchmarks and smoke tests.

Deterministic per ``seed`` (and split: the test split draws from a different stream than the
training split of the same seed), generated in one vectorised call.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import torch

from cnnatlas.data.core import ArrayDataset, normalize_split
from cnnatlas.errors import InputError
from cnnatlas.limits import MAX_IMAGE_SIDE, MAX_IN_CHANS, MAX_NUM_CLASSES

#: Uniform random bytes over 0..255: mean 127.5/255 = 0.5 and std sqrt((256² - 1) / 12)/255
#: (the variance of a discrete uniform distribution on 256 values), per channel.
UNIFORM_MEAN = 0.5
UNIFORM_STD = math.sqrt((256**2 - 1) / 12) / 255

#: Refuse requests that would not fit in memory anyway, with a sentence instead of an OOM kill:
#: the limit is on the train and test splits together (a run holds both).
MAX_BYTES = 16 * 2**30

# Added to the seed for the test split so that train and test are different draws.
_TEST_SEED_OFFSET = 0x5EED


def parse_image_size(image_size: int | str | Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` from a 3-sequence, a ``"CxHxW"`` string, or an int ``S`` meaning ``(3, S, S)``."""
    if isinstance(image_size, bool):
        raise InputError(f"synthetic: image_size must be three positive integers (C, H, W), got {image_size!r}")
    if isinstance(image_size, int):
        dims: Sequence[int] = (3, image_size, image_size)
    elif isinstance(image_size, str):
        parts = re.split(r"[x×,\s]+", image_size.strip())
        try:
            dims = tuple(int(p) for p in parts if p)
        except ValueError:
            raise InputError(f"synthetic: image_size {image_size!r} is not of the form CxHxW, e.g. 3x32x32") from None
    else:
        try:
            dims = tuple(image_size)
        except TypeError:
            raise InputError(f"synthetic: image_size must be CxHxW or three integers, got {image_size!r}") from None
    if len(dims) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise InputError(f"synthetic: image_size must be three positive integers (C, H, W), got {image_size!r}")
    if dims[0] > MAX_IN_CHANS or max(dims[1:]) > MAX_IMAGE_SIDE:
        raise InputError(
            f"synthetic: image_size {image_size!r} exceeds {MAX_IN_CHANS} channels or {MAX_IMAGE_SIDE} pixels a side"
        )
    return (dims[0], dims[1], dims[2])


def make_synthetic(
    split: str = "train",
    *,
    num_samples: int = 1024,
    image_size: int | str | Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
) -> ArrayDataset:
    """A data set of ``num_samples`` uniform random uint8 images with uniform random labels."""
    split = normalize_split(split)
    c, h, w = parse_image_size(image_size)
    for key, value, limit in (("num_samples", num_samples, 2**40), ("num_classes", num_classes, MAX_NUM_CLASSES)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise InputError(f"synthetic: {key} must be a positive integer of at most {limit:,}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**62:
        raise InputError(f"synthetic: seed must be an integer from 0 to 2**62 - 1, got {seed!r}")
    both = 2 * num_samples * c * h * w  # a run loads the train and the test split, each this size
    if both > MAX_BYTES:
        raise InputError(
            f"synthetic: 2 splits × {num_samples}×{c}×{h}×{w} bytes exceeds the {MAX_BYTES // 2**30} GiB limit "
            "for the two splits together"
        )
    generator = torch.Generator().manual_seed(int(seed) + (_TEST_SEED_OFFSET if split == "test" else 0))
    images = torch.randint(0, 256, (num_samples, c, h, w), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (num_samples,), dtype=torch.int64, generator=generator)
    classes = tuple(f"class_{i}" for i in range(num_classes))
    return ArrayDataset("synthetic", split, images, labels, classes, (UNIFORM_MEAN,) * c, (UNIFORM_STD,) * c)
