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

#: Uniform random bytes over 0..255: mean 127.5/255 = 0.5 and std sqrt((256² - 1) / 12)/255
#: (the variance of a discrete uniform distribution on 256 values), per channel.
UNIFORM_MEAN = 0.5
UNIFORM_STD = math.sqrt((256**2 - 1) / 12) / 255

#: Refuse requests that would not fit in memory anyway, with a sentence instead of an OOM kill.
MAX_BYTES = 16 * 2**30

# Added to the seed for the test split so that train and test are different draws.
_TEST_SEED_OFFSET = 0x5EED


def parse_image_size(image_size: int | str | Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` from a 3-sequence, a ``"CxHxW"`` string, or an int ``S`` meaning ``(3, S, S)``."""
    if isinstance(image_size, int):
        dims: Sequence[int] = (3, image_size, image_size)
    elif isinstance(image_size, str):
        parts = re.split(r"[x×,\s]+", image_size.strip())
        try:
            dims = tuple(int(p) for p in parts if p)
        except ValueError:
            raise InputError(f"synthetic: image_size {image_size!r} is not of the form CxHxW, e.g. 3x32x32") from None
    else:
        dims = tuple(image_size)
    if len(dims) != 3 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise InputError(f"synthetic: image_size must be three positive integers (C, H, W), got {image_size!r}")
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
    if not isinstance(num_samples, int) or num_samples <= 0:
        raise InputError(f"synthetic: num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise InputError(f"synthetic: num_classes must be a positive integer, got {num_classes!r}")
    if num_samples * c * h * w > MAX_BYTES:
        raise InputError(f"synthetic: {num_samples}×{c}×{h}×{w} bytes exceeds the {MAX_BYTES // 2**30} GiB limit")
    generator = torch.Generator().manual_seed(int(seed) + (_TEST_SEED_OFFSET if split == "test" else 0))
    images = torch.randint(0, 256, (num_samples, c, h, w), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, num_classes, (num_samples,), dtype=torch.int64, generator=generator)
    classes = tuple(f"class_{i}" for i in range(num_classes))
    return ArrayDataset("synthetic", split, images, labels, classes, (UNIFORM_MEAN,) * c, (UNIFORM_STD,) * c)
