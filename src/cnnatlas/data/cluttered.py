"""Cluttered, translated MNIST digits on a larger canvas, generated from the bundled sample.

On the 8,000 clean bundled digits most architectures reach ~99 % and differences between them
drown in the seeds' noise. This task is harder in the ways that separate architectures: the
digit sits at a random position on a ``canvas``×``canvas`` field (translation invariance, the
receptive field has to find it) among ``clutter`` 8×8 fragments cut from other digits
(distractors made of real strokes), the construction of the "cluttered MNIST" of Ba, Mnih &
Kavukcuoglu 2014 (§4.1: 60×60, eight 8×8 pieces) and Jaderberg et al. 2015 (Spatial
Transformer Networks, §4.1), scaled down to 40×40 with four pieces so that a laptop CPU
trains on it in minutes.

Determinism and disjointness: everything is drawn from ``numpy.random.default_rng`` seeded by
``seed`` and the split, so a (seed, options) pair always gives the same bytes; the training
split is built only from the bundled training digits (digit and clutter), the test split only
from the bundled test digits, so no stroke of a test image was ever seen in training.

Options (all recorded in a run's ``config.json``):

``canvas`` (40) side of the field; ``clutter`` (4) fragments per image; ``seed`` (0);
``train_size`` (all 8,000) the first N training digits — the reduced-data regime;
``digits`` (all) a subset such as ``"0-4"`` or ``"5,6,7"``, relabelled 0…k−1 in that order
(for transfer experiments: train on 0–4, probe on 5–9); ``scale_jitter`` (0) training digits
drawn at a random scale in [1 − j, 1 + j] (VGG §3.1's scale jittering, applied when the set is
generated; the test split always keeps scale 1, so testing stays single-scale unless the
evaluation rescales).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from cnnatlas.data.core import ArrayDataset, normalize_split
from cnnatlas.errors import InputError

DIGIT_SIDE = 28
PIECE = 8  # Ba et al. 2014 §4.1: 8×8 clutter fragments
# Fragments are cut from the central 20×20 box of a digit, where its strokes are
# (LeCun et al.: digits are size-normalised to 20×20 and centred in the 28×28 field).
_STROKE_BOX = (4, DIGIT_SIDE - 4 - PIECE)
_SPLIT_STREAM = {"train": 0, "test": 1}
NAME = "cluttered-mnist"


def parse_digits(digits: str | int | None) -> tuple[int, ...]:
    """``"0-4"`` → (0, 1, 2, 3, 4); ``"5,7"`` → (5, 7); ``None`` → all ten digits."""
    if digits is None:
        return tuple(range(10))
    text = str(digits).strip()
    chosen: list[int] = []
    for part in filter(None, re.split(r"[,\s]+", text)):
        match = re.fullmatch(r"(\d)(?:-(\d))?", part)
        if not match:
            raise InputError(f"{NAME}: digits must look like '0-4' or '5,6,7', got {digits!r}")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise InputError(f"{NAME}: digit range {part!r} runs backwards")
        chosen.extend(range(low, high + 1))
    if not chosen or len(set(chosen)) != len(chosen):
        raise InputError(f"{NAME}: digits {digits!r} must name each digit at most once and at least one")
    return tuple(chosen)


def _check(canvas: int, clutter: int, train_size: int | None, scale_jitter: float) -> None:
    if not isinstance(canvas, int) or canvas < DIGIT_SIDE:
        raise InputError(f"{NAME}: canvas must be an integer ≥ {DIGIT_SIDE}, got {canvas!r}")
    if not isinstance(clutter, int) or clutter < 0:
        raise InputError(f"{NAME}: clutter must be a non-negative integer, got {clutter!r}")
    if train_size is not None and (not isinstance(train_size, int) or train_size < 1):
        raise InputError(f"{NAME}: train_size must be a positive integer, got {train_size!r}")
    if not isinstance(scale_jitter, (int, float)) or not 0 <= scale_jitter < 1:
        raise InputError(f"{NAME}: scale_jitter must be in [0, 1), got {scale_jitter!r}")
    if canvas < round(DIGIT_SIDE * (1 + scale_jitter)):
        raise InputError(f"{NAME}: a canvas of {canvas} cannot hold digits scaled by up to {1 + scale_jitter:g}")


def _place_digits(digits: torch.Tensor, rng: np.random.Generator, canvas: int, jitter: float) -> torch.Tensor:
    """Each 28×28 digit scaled by s ∈ [1 − jitter, 1 + jitter] and placed with its box inside
    the canvas at a uniform random position, in one ``grid_sample`` call."""
    n = digits.shape[0]
    scale = rng.uniform(1 - jitter, 1 + jitter, n) if jitter > 0 else np.ones(n)
    half = DIGIT_SIDE * scale / 2
    centre = rng.uniform(half[:, None], canvas - half[:, None], (n, 2))  # (x, y) in pixels
    # Output pixel at normalised u ∈ [-1, 1] lies at p = (u + 1)·C/2; the digit's normalised
    # coordinate there is (p − centre)/half, i.e. u·C/(2·half) + (C/2 − centre)/half.
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0] = theta[:, 1, 1] = canvas / (2 * half)
    theta[:, :, 2] = (canvas / 2 - centre) / half[:, None]
    theta_t = torch.from_numpy(theta).float()
    grid = F.affine_grid(theta_t, [n, 1, canvas, canvas], align_corners=False)
    placed = F.grid_sample(digits.float().unsqueeze(1), grid, mode="bilinear", align_corners=False)
    return placed.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)


def _add_clutter(field: torch.Tensor, pool: torch.Tensor, rng: np.random.Generator, pieces: int) -> None:
    """Max-composite ``pieces`` 8×8 fragments of random digits of ``pool`` onto every image."""
    n, canvas = field.shape[0], field.shape[-1]
    rows = torch.arange(n)[:, None, None]
    span = torch.arange(PIECE)
    for _ in range(pieces):
        source = torch.from_numpy(rng.integers(0, pool.shape[0], n))
        cut = torch.from_numpy(rng.integers(_STROKE_BOX[0], _STROKE_BOX[1] + 1, (n, 2)))
        at = torch.from_numpy(rng.integers(0, canvas - PIECE + 1, (n, 2)))
        piece = pool[source[:, None, None], (cut[:, 0, None] + span)[:, :, None], (cut[:, 1, None] + span)[:, None, :]]
        ys, xs = (at[:, 0, None] + span)[:, :, None], (at[:, 1, None] + span)[:, None, :]
        field[rows, ys, xs] = torch.maximum(field[rows, ys, xs], piece)


CHUNK = 1000  # digits generated per random stream: the first N images need only ⌈N/1000⌉ chunks


@lru_cache(maxsize=64)
def _generate_chunk(
    split: str, chunk: int, canvas: int, clutter: int, seed: int, scale_jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``chunk·1000 …`` of a split, from their own stream seeded by (seed, split, chunk)."""
    source = _source(split)
    digits = source.images[chunk * CHUNK : (chunk + 1) * CHUNK, 0]
    rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split], chunk])
    field = torch.zeros(digits.shape[0], canvas, canvas, dtype=torch.uint8)
    _add_clutter(field, source.images[:, 0], rng, clutter)
    field = torch.maximum(field, _place_digits(digits, rng, canvas, scale_jitter if split == "train" else 0.0))
    return field.unsqueeze(1), source.labels[chunk * CHUNK : (chunk + 1) * CHUNK]


@lru_cache(maxsize=2)
def _source(split: str) -> ArrayDataset:
    from cnnatlas.data.idx import load_mnist_sample

    return load_mnist_sample(split)


def _generate(
    split: str, count: int | None, canvas: int, clutter: int, seed: int, scale_jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    total = len(_source(split)) if count is None else min(count, len(_source(split)))
    parts = [_generate_chunk(split, c, canvas, clutter, seed, scale_jitter) for c in range(-(-total // CHUNK))]
    images = torch.cat([p[0] for p in parts])[:total]
    labels = torch.cat([p[1] for p in parts])[:total]
    return images, labels


def make_cluttered(
    split: str = "train",
    *,
    canvas: int = 40,
    clutter: int = 4,
    seed: int = 0,
    train_size: int | None = None,
    digits: str | None = None,
    scale_jitter: float = 0.0,
    name: str = NAME,
) -> ArrayDataset:
    """One split of the cluttered-digit task (see the module docstring for the options)."""
    split = normalize_split(split)
    _check(canvas, clutter, train_size, scale_jitter)
    chosen = parse_digits(digits)
    # A digit subset keeps the first train_size digits *of the subset*; without one the first
    # train_size images are all that must be generated.
    count = train_size if split == "train" and chosen == tuple(range(10)) else None
    images, labels = _generate(split, count, canvas, clutter, int(seed), float(scale_jitter))
    # Normalisation statistics of the first 1,000 training images: the same for every split,
    # train_size and digit subset of a (canvas, clutter, seed, scale_jitter) setting.
    pixels = _generate_chunk("train", 0, canvas, clutter, int(seed), float(scale_jitter))[0].float().div_(255)
    mean, std = float(pixels.mean()), float(pixels.std())
    if chosen != tuple(range(10)):
        relabel = torch.full((10,), -1, dtype=torch.int64)
        relabel[list(chosen)] = torch.arange(len(chosen))
        keep = relabel[labels] >= 0
        images, labels = images[keep], relabel[labels[keep]]
    if split == "train" and train_size is not None:
        images, labels = images[:train_size], labels[:train_size]
    return ArrayDataset(name, split, images.clone(), labels.clone(), tuple(str(d) for d in chosen), (mean,), (std,))
