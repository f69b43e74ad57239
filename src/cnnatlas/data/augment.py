"""The papers' training augmentations, done on whole batches.

Every augmentation is ``augment(batch, generator) -> batch``: it takes a uint8 or float [0,1]
batch N×C×H×W on any device and returns float32 in [0,1] (not normalised: normalisation is the
input adapter's job). There is no per-sample Python: crops and flips are one gather, scale
jittering is one ``F.grid_sample`` with a per-image affine grid, colour changes are broadcast
arithmetic. All randomness comes from the explicit ``torch.Generator`` (on the batch's device),
so a resumed run draws exactly the numbers an uninterrupted one would.

Names (``build_train_augment(name, out_size=…)``):

``none``
    the batch as float [0,1] (centre-cropped to ``out_size`` if that is smaller).
``pad_crop_flip``
    He et al. 2015 §4.2 (CIFAR): "4 pixels are padded on each side, and a 32×32 crop is randomly
    sampled from the padded image or its horizontal flip".
``alexnet``
    Krizhevsky et al. 2012 §4.1: images rescaled so the shorter side is 256 and centre-cropped
    to 256×256, random 224×224 patches and their horizontal reflections, and "fancy PCA"
    lighting noise (σ = 0.1) along the RGB principal components.
``vgg_scale_jitter``
    Simonyan & Zisserman 2014 §3.1: each image rescaled so its shorter side is S drawn
    uniformly from [256, 512], a random 224×224 crop, random horizontal flip (and the RGB
    colour shift of Krizhevsky et al., which VGG also uses).
``inception_crop``
    Szegedy et al. 2014 §6: "sampling of various sized patches of the image whose size is
    distributed evenly between 8% and 100% of the image area with aspect ratio constrained to
    the interval [3/4, 4/3]", flips, and "the photometric distortions of Andrew Howard"
    (Howard 2013 §2.1: contrast, brightness and colour each enhanced by a factor from
    [0.5, 1.5] in a random order, then the lighting noise).
``shift``
    digits: a random integer translation in [−2, 2]² pixels with zero fill (one gather).
``lecun_affine``
    LeCun et al. 1998 §III.C.4 (the "distortions" of the 0.8 %-error LeNet-5): "planar affine
    transformations: horizontal and vertical translations, scaling, squeezing (simultaneous
    horizontal compression and vertical elongation, or the reverse), and horizontal
    shearing", drawn per image. The paper prints no ranges; ours are translations of ±2 pixels,
    scaling and squeezing by factors in [0.9, 1.1] and a shear of ±0.15, resampled bilinearly
    with zero fill in one ``F.grid_sample``. No mirroring: a mirrored digit is another symbol.
``elastic_affine``
    ``lecun_affine`` plus the elastic distortion of Simard, Steinkraus & Platt 2003 §2 ("Best
    practices for convolutional neural networks applied to visual document analysis"): a
    per-pixel random displacement field, uniform in [−1, 1], smoothed by a Gaussian of σ = 4
    pixels and scaled by α = 34 pixels (their values for 28×28 digits), added to the affine
    sampling grid: still one ``F.grid_sample`` per batch.
``resnet_scale``
    He et al. 2015 §3.4: "the image is resized with its shorter side randomly sampled in
    [256, 480] for scale augmentation. A 224×224 crop is randomly sampled from an image or its
    horizontal flip … The standard color augmentation in [21] is used" ([21] = Krizhevsky).

Sizes scale with ``out_size``: the paper's numbers are for 224 outputs; with ``out_size = s`` a
side S of the paper becomes ``S·s/224`` (e.g. ``alexnet`` at 32 pixels resizes to 37).
Rescaling happens on the batch, so an image-folder run decodes each image at the largest side
its augmentation rescales to (:func:`folder_decode_side`: 512 for ``vgg_scale_jitter``, 480 for
``resnet_scale``, 256 for the others, at 224 outputs), so no crop is cut from a smaller image and
upsampled; bilinear grid sampling then shrinks by at most 2×, where aliasing stays small. The
decoded image is the central square of that side, so the random crops of the scale
augmentations come from the central square of the rescaled image, not from its full width.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Augment = Callable[[Tensor, torch.Generator], Tensor]

# Principal components of ImageNet RGB pixel values in [0,1] units, as computed over the
# training set by fb.resnet.torch (datasets/imagenet.lua, `pca`) and used by the torchvision
# and timm "Lighting" transforms; Krizhevsky et al. did not print theirs.
IMAGENET_PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGENVECTORS = (  # columns are the eigenvectors p1, p2, p3
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# Krizhevsky et al. 2012 §4.1: α_i "drawn from a Gaussian with mean zero and standard deviation 0.1".
LIGHTING_STD = 0.1
# Howard 2013 §2.1: enhancement factors "between 0.5 and 1.5".
PHOTOMETRIC_RANGE = (0.5, 1.5)
# ITU-R 601-2 luma, the weights PIL's convert("L") (and so ImageEnhance) uses.
_LUMA = (0.299, 0.587, 0.114)

PAPER_SIDE = 224
# The papers' ranges of the rescaled shorter side S (at 224 outputs).
VGG_SCALE_RANGE = (256, 512)  # Simonyan & Zisserman 2014 §3.1, scale jittering
RESNET_SCALE_RANGE = (256, 480)  # He et al. 2015 §3.4, scale augmentation
ALEXNET_SIDE = 256  # Krizhevsky et al. 2012 §2: images rescaled and cropped to 256×256
TRAIN_AUGMENTS = (
    "none",
    "pad_crop_flip",
    "alexnet",
    "vgg_scale_jitter",
    "inception_crop",
    "resnet_scale",
    "shift",
    "lecun_affine",
    "elastic_affine",
)
# Those whose output keeps the stored image size by default (digits, CIFAR); the others make the
# papers' 224 crops, scaled to the recipe's image size.
SIZE_KEEPING_AUGMENTS = ("none", "pad_crop_flip", "shift", "lecun_affine", "elastic_affine")


# -- building blocks ---------------------------------------------------------------------------
def to_float(x: Tensor) -> Tensor:
    """uint8 [0,255] → float32 [0,1]; a float batch is returned as float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def _check_batch(x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"augmentations take an N×C×H×W batch, got shape {tuple(x.shape)}")


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def crop_flip(x: Tensor, top: Tensor, left: Tensor, flip: Tensor, size: int) -> Tensor:
    """Per-image ``size``×``size`` crops at (``top``, ``left``), mirrored where ``flip``: one gather.

    >>> x = torch.arange(16.).view(1, 1, 4, 4)
    >>> crop_flip(x, torch.tensor([1]), torch.tensor([0]), torch.tensor([True]), 2)[0, 0].tolist()
    [[5.0, 4.0], [9.0, 8.0]]
    """
    steps = torch.arange(size, device=x.device)
    rows = top[:, None] + steps  # N×size
    cols = torch.where(flip[:, None], left[:, None] + (size - 1) - steps, left[:, None] + steps)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
    # Advanced indices around a slice put the gathered dims first: N×size×size×C.
    return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def affine_crops(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Resample per-image boxes (N×4: top, left, height, width in input pixels, fractional) to
    ``size``×``size`` with bilinear ``grid_sample``, mirrored where ``flip``."""
    n, _, height, width = x.shape
    top, left, box_h, box_w = boxes.unbind(1)
    # Normalised coordinates (align_corners=False): pixel edge 0 ↦ −1, edge W ↦ +1.
    centre_x = (left + box_w / 2) / width * 2 - 1
    centre_y = (top + box_h / 2) / height * 2 - 1
    sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sign * box_w / width
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = box_h / height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_shorter_and_center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize (antialiased when shrinking) so the image covers ``size``, then centre-crop it:
    the "rescale the shorter side, crop the central patch" of Krizhevsky et al. §2.

    Works on one C×H×W image or an N×C×H×W batch; uint8 stays uint8.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    height, width = x.shape[-2:]
    if (height, width) == (out_h, out_w):
        return x
    scale = max(out_h / height, out_w / width)
    new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    if (new_h, new_w) != (height, width):
        batch = x if x.dim() == 4 else x[None]
        resized = F.interpolate(
            batch.float(), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1
        )
        if x.dtype == torch.uint8:
            resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        x = resized if x.dim() == 4 else resized[0]
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return x[..., top : top + out_h, left : left + out_w]


def fancy_pca_lighting(x: Tensor, gen: torch.Generator, std: float = LIGHTING_STD) -> Tensor:
    """Krizhevsky et al. 2012 §4.1: add [p1 p2 p3][α1λ1 α2λ2 α3λ3]ᵀ to every pixel of an image,
    α_i ~ N(0, std) drawn once per image. Defined for RGB; other channel counts are returned
    unchanged (there are no published components for them). Result clamped to [0,1]."""
    if x.shape[1] != 3:
        return x
    eigval = torch.tensor(IMAGENET_PCA_EIGENVALUES, device=x.device, dtype=x.dtype)
    eigvec = torch.tensor(IMAGENET_PCA_EIGENVECTORS, device=x.device, dtype=x.dtype)
    alpha = torch.randn(x.shape[0], 3, generator=gen, device=x.device, dtype=x.dtype) * std
    shift = (alpha * eigval) @ eigvec.T  # N×3: Σ_i α_i λ_i p_i
    return (x + shift[:, :, None, None]).clamp_(0.0, 1.0)


def _grayscale(x: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)
    return (x * weights[None, :, None, None]).sum(dim=1, keepdim=True)


def photometric_distortions(
    x: Tensor, gen: torch.Generator, factor_range: tuple[float, float] = PHOTOMETRIC_RANGE
) -> Tensor:
    """Howard 2013 §2.1 as PIL's ImageEnhance does it: brightness (blend with black), contrast
    (blend with the image's mean grey) and colour (blend with its greyscale), each with a factor
    from ``factor_range``, in a random order per image; clipped to [0,1] after each step.

    All three are the same blend ``f·x + (1−f)·D`` with a different "degenerate" image D, so
    each of the three steps is one blend with a per-image f and D — not three ops and a select.
    """
    n, device = x.shape[0], x.device
    factors = _uniform(3 * n, *factor_range, gen, device).view(3, n).to(x.dtype)
    order = torch.rand(n, 3, generator=gen, device=device).argsort(dim=1)  # a random permutation per image
    rows = torch.arange(n, device=device)
    for slot in range(3):
        chosen = order[:, slot]  # 0 brightness, 1 contrast, 2 colour
        grey = _grayscale(x)  # N×1×H×W
        mean = grey.mean(dim=(1, 2, 3), keepdim=True)
        pick = chosen[:, None, None, None]
        degenerate = torch.where(pick == 0, 0.0, torch.where(pick == 1, mean, grey))
        factor = factors[chosen, rows][:, None, None, None]
        x = torch.lerp(degenerate.expand_as(x), x, factor.expand_as(x)).clamp_(0.0, 1.0)
    return x


def _random_flips(n: int, gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=device) < 0.5


def _scaled(side: float, out_size: int) -> float:
    return side * out_size / PAPER_SIDE


# -- the augmentations ---------------------------------------------------------------------
class _NoAugment:
    def __init__(self, out_size: int | None) -> None:
        self.out_size = out_size

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        size = self.out_size
        if size is not None and size <= min(x.shape[-2:]):
            height, width = x.shape[-2:]
            top, left = (height - size) // 2, (width - size) // 2
            x = x[..., top : top + size, left : left + size]
        return to_float(x)


class PadCropFlip:
    """He et al. 2015 §4.2: zero-pad ``pad`` pixels, random ``out_size`` crop, random mirror."""

    def __init__(self, out_size: int | None = None, pad: int = 4) -> None:
        self.out_size, self.pad = out_size, pad

    def draw(self, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, int]:
        """The random offsets (in the padded image) and flips for this batch."""
        n, _, height, width = x.shape
        size = self.out_size or min(height, width)
        top = torch.randint(0, height + 2 * self.pad - size + 1, (n,), generator=gen, device=x.device)
        left = torch.randint(0, width + 2 * self.pad - size + 1, (n,), generator=gen, device=x.device)
        flip = _random_flips(n, gen, x.device)
        return top, left, flip, size

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        top, left, flip, size = self.draw(x, gen)
        padded = F.pad(x, (self.pad,) * 4)  # zeros: black in [0,1] units, as in the paper
        return to_float(crop_flip(padded, top, left, flip, size))


class AlexNetAugment:
    """Krizhevsky et al. 2012 §4.1: 256² centre, random 224 patches + mirrors, fancy PCA."""

    def __init__(self, out_size: int | None = None) -> None:
        self.out_size = out_size or PAPER_SIDE

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        base = round(_scaled(ALEXNET_SIDE, self.out_size))
        x = resize_shorter_and_center_crop(to_float(x), base)  # float first: no re-quantisation
        n = x.shape[0]
        span = base - self.out_size + 1
        top = torch.randint(0, span, (n,), generator=gen, device=x.device)
        left = torch.randint(0, span, (n,), generator=gen, device=x.device)
        x = crop_flip(x, top, left, _random_flips(n, gen, x.device), self.out_size)
        return fancy_pca_lighting(x, gen)


class ScaleJitter:
    """Shorter side S ~ U[low, high] per image, random ``out_size`` crop, mirror, PCA lighting
    (VGG §3.1 with [256, 512]; ResNet §3.4 with [256, 480])."""

    def __init__(self, low: int, high: int, out_size: int | None = None) -> None:
        self.low, self.high = low, high
        self.out_size = out_size or PAPER_SIDE

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        x = to_float(x)
        n, _, height, width = x.shape
        low, high = _scaled(self.low, self.out_size), _scaled(self.high, self.out_size)
        # Integer S as the papers' image resizing has; then the crop covers out/scale input pixels.
        shorter = torch.randint(round(low), round(high) + 1, (n,), generator=gen, device=x.device).to(x.dtype)
        box = self.out_size * min(height, width) / shorter  # crop side in input pixels
        top = torch.rand(n, generator=gen, device=x.device) * (height - box)
        left = torch.rand(n, generator=gen, device=x.device) * (width - box)
        flip = _random_flips(n, gen, x.device)
        x = affine_crops(x, torch.stack([top, left, box, box], dim=1), flip, self.out_size)
        return fancy_pca_lighting(x.clamp_(0.0, 1.0), gen)


class InceptionCrop:
    """GoogLeNet §6: area 8–100 %, aspect ratio 3/4–4/3 (log-uniform, as torchvision's
    RandomResizedCrop), mirror, Howard's photometric distortions and lighting noise."""

    attempts = 10  # torchvision's RandomResizedCrop tries 10 boxes before falling back

    def __init__(
        self,
        out_size: int | None = None,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.out_size = out_size or PAPER_SIDE
        self.scale, self.ratio = scale, ratio

    def draw_boxes(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """N×4 boxes (top, left, height, width) in input pixels, all inside the image."""
        n, _, height, width = x.shape
        device, tries = x.device, self.attempts
        area = _uniform(n * tries, *self.scale, gen, device).view(n, tries) * (height * width)
        log_ratio = _uniform(n * tries, math.log(self.ratio[0]), math.log(self.ratio[1]), gen, device).view(n, tries)
        aspect = log_ratio.exp()
        box_w = (area * aspect).sqrt()
        box_h = (area / aspect).sqrt()
        fits = (box_w <= width) & (box_h <= height)
        # The first box that fits, else the whole image (torchvision's fallback for
        # in-range aspect ratios); chosen by index, no per-sample Python.
        first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), torch.full((n,), -1, device=device))
        pick = first.clamp(min=0)[:, None]
        box_w = torch.where(first >= 0, box_w.gather(1, pick)[:, 0], torch.full((n,), float(width), device=device))
        box_h = torch.where(first >= 0, box_h.gather(1, pick)[:, 0], torch.full((n,), float(height), device=device))
        top = torch.rand(n, generator=gen, device=device) * (height - box_h)
        left = torch.rand(n, generator=gen, device=device) * (width - box_w)
        return torch.stack([top, left, box_h, box_w], dim=1).to(torch.float32)

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        x = to_float(x)
        boxes = self.draw_boxes(x, gen).to(x.dtype)
        flip = _random_flips(x.shape[0], gen, x.device)
        x = affine_crops(x, boxes, flip, self.out_size).clamp_(0.0, 1.0)
        x = photometric_distortions(x, gen)
        return fancy_pca_lighting(x, gen)


class RandomShift:
    """Translate every image by a random integer offset in [−max_shift, max_shift]² (zero fill),
    keeping the central ``out_size`` square (the whole image by default).

    Zero-pad by ``max_shift`` and take one window per image through a gather, so no per-sample
    Python runs. Small translations are the cheapest part of LeCun et al.'s distortions.
    """

    def __init__(self, max_shift: int = 2, out_size: int | None = None) -> None:
        self.max_shift, self.out_size = max_shift, out_size

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        n, _, height, width = x.shape
        size = min(self.out_size or min(height, width), height, width)
        s = self.max_shift
        offsets = torch.randint(0, 2 * s + 1, (2, n), generator=gen, device=gen.device).to(x.device)
        top = offsets[0] + (height - size) // 2
        left = offsets[1] + (width - size) // 2
        padded = F.pad(to_float(x), (s, s, s, s))
        return crop_flip(padded, top, left, torch.zeros(n, dtype=torch.bool, device=x.device), size)


class LeCunAffine:
    """LeCun et al. 1998 §III.C.4: random translation, scaling, squeezing and horizontal shear
    per image (ranges in the module docstring), one bilinear ``grid_sample`` for the batch."""

    def __init__(
        self,
        out_size: int | None = None,
        max_shift: float = 2.0,
        scale: float = 0.1,
        squeeze: float = 0.1,
        shear: float = 0.15,
    ) -> None:
        self.out_size, self.max_shift = out_size, max_shift
        self.scale, self.squeeze, self.shear = scale, squeeze, shear

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        _check_batch(x)
        size = self.out_size or min(x.shape[-2:])
        out = F.grid_sample(
            to_float(x), self._grid(x, gen, size), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return out.clamp_(0.0, 1.0)

    def _grid(self, x: Tensor, gen: torch.Generator, size: int) -> Tensor:
        """The (n, size, size, 2) sampling grid of one random distortion per image."""
        n, chans, height, width = x.shape
        draws = torch.rand(5, n, generator=gen, device=gen.device).to(x.device) * 2 - 1  # U[-1, 1]
        scale = 1 + self.scale * draws[0]
        squeeze = 1 + self.squeeze * draws[1]
        # theta maps output to input coordinates (normalised to [-1, 1]): the inverse of the
        # distortion, so a factor > 1 here shrinks the digit.
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = scale * squeeze
        theta[:, 1, 1] = scale / squeeze
        theta[:, 0, 1] = self.shear * draws[2]
        theta[:, 0, 2] = self.max_shift * draws[3] * 2 / width
        theta[:, 1, 2] = self.max_shift * draws[4] * 2 / height
        return F.affine_grid(theta, [n, chans, size, size], align_corners=False)


class ElasticAffine(LeCunAffine):
    """``lecun_affine`` plus Simard, Steinkraus & Platt's (2003, §2) elastic distortion: a
    random displacement field, uniform in [−1, 1] per pixel and axis, smoothed by a Gaussian of
    standard deviation ``sigma`` pixels and scaled by ``alpha`` pixels, added to the affine
    sampling grid, so the batch is still resampled by one ``F.grid_sample``."""

    def __init__(self, out_size: int | None = None, alpha: float = 34.0, sigma: float = 4.0, **affine: float) -> None:
        super().__init__(out_size, **affine)
        self.alpha, self.sigma = alpha, sigma

    def _smoothing_kernel(self, device: torch.device) -> Tensor:
        radius = int(math.ceil(2 * self.sigma))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
        kernel = torch.exp(-0.5 * (taps / self.sigma) ** 2)
        return kernel / kernel.sum()

    def _grid(self, x: Tensor, gen: torch.Generator, size: int) -> Tensor:
        """The affine grid plus a smoothed random displacement of every output pixel."""
        n = x.shape[0]
        grid = super()._grid(x, gen, size)
        field = torch.rand(n * 2, 1, size, size, generator=gen, device=gen.device).to(x.device) * 2 - 1
        kernel = self._smoothing_kernel(x.device)
        radius = kernel.numel() // 2
        field = F.conv2d(field, kernel.view(1, 1, 1, -1), padding=(0, radius))  # along x
        field = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0))  # along y
        # Pixels → grid units ([-1, 1] spans the side): (dx, dy) for each output pixel.
        return grid + field.view(n, 2, size, size).permute(0, 2, 3, 1) * (self.alpha * 2 / size)


def build_train_augment(name: str, *, out_size: int | None = None) -> Augment:
    """The training augmentation ``name`` producing ``out_size``² float [0,1] batches.

    >>> aug = build_train_augment("pad_crop_flip")
    >>> aug(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 32, 32])
    """
    if name == "none":
        return _NoAugment(out_size)
    if name == "pad_crop_flip":
        return PadCropFlip(out_size)
    if name == "alexnet":
        return AlexNetAugment(out_size)
    if name == "vgg_scale_jitter":
        return ScaleJitter(*VGG_SCALE_RANGE, out_size)
    if name == "resnet_scale":
        return ScaleJitter(*RESNET_SCALE_RANGE, out_size)
    if name == "inception_crop":
        return InceptionCrop(out_size)
    if name == "shift":
        return RandomShift(2, out_size)
    if name == "lecun_affine":
        return LeCunAffine(out_size)
    if name == "elastic_affine":
        return ElasticAffine(out_size)
    from cnnatlas.errors import InputError

    raise InputError(f"unknown augmentation {name!r}; choose one of {', '.join(TRAIN_AUGMENTS)}")


def folder_decode_side(name: str, out_size: int) -> int:
    """The side an image folder is decoded at for training with augmentation ``name`` and
    ``out_size`` crops: the largest shorter side the augmentation rescales to (S_max of VGG's
    scale jittering, 512; of ResNet's scale augmentation, 480; AlexNet's 256 for the others),
    scaled by ``out_size / 224``; ``out_size`` itself for ``none``.

    >>> folder_decode_side("vgg_scale_jitter", 224), folder_decode_side("resnet_scale", 224)
    (512, 480)
    >>> folder_decode_side("alexnet", 224), folder_decode_side("none", 224)
    (256, 224)
    """
    if name == "none":
        return out_size
    largest = {"vgg_scale_jitter": VGG_SCALE_RANGE[1], "resnet_scale": RESNET_SCALE_RANGE[1]}.get(name, ALEXNET_SIDE)
    return round(_scaled(largest, out_size))


class FolderSampleTransform:
    """Per-sample decode-time resize for image folders, so that a batch stacks: the shorter side
    to ``size`` (antialiased), then the central ``size``×``size`` square (Krizhevsky §2).

    Deterministic in both modes: the training randomness lives in the batch augmentations,
    driven by one generator, so that a resumed run is exact. ``train`` is recorded so that a
    run's config says which side of the split it was built for. A class, not a closure, so that
    DataLoader workers can pickle it in their own process.
    """

    def __init__(self, train: bool, size: int) -> None:
        if size < 1:
            from cnnatlas.errors import InputError

            raise InputError(f"image size must be positive, got {size}")
        self.train, self.size = train, size

    def __call__(self, image: Tensor) -> Tensor:
        return resize_shorter_and_center_crop(image, self.size).contiguous()

    def __repr__(self) -> str:
        return f"FolderSampleTransform(train={self.train}, size={self.size})"


def folder_sample_transform(train: bool, size: int) -> FolderSampleTransform:
    """See :class:`FolderSampleTransform`."""
    return FolderSampleTransform(train, size)
