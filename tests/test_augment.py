"""Batch augmentations: shapes and ranges, determinism per generator, and each paper's
geometry (He et al. 2015 §4.2 pad-crop-flip, Krizhevsky et al. 2012 §4.1 crops and fancy PCA,
Szegedy et al. 2014 §6 crop areas/aspect ratios, VGG §3.1 / ResNet §3.4 scale ranges)."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from cnnatlas.data.augment import (
    IMAGENET_PCA_EIGENVALUES,
    IMAGENET_PCA_EIGENVECTORS,
    SIZE_KEEPING_AUGMENTS,
    TRAIN_AUGMENTS,
    ElasticAffine,
    InceptionCrop,
    LeCunAffine,
    PadCropFlip,
    affine_crops,
    build_train_augment,
    fancy_pca_lighting,
    folder_sample_transform,
    photometric_distortions,
)
from cnnatlas.errors import InputError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, side: int = 64, chans: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, chans, side, side), generator=_gen(seed), dtype=torch.uint8)


# Expected output side for a 64-pixel batch with out_size=None / 48.
@pytest.mark.parametrize("name", TRAIN_AUGMENTS)
@pytest.mark.parametrize("out_size", [None, 48])
def test_shapes_ranges_and_dtype(name: str, out_size: int | None) -> None:
    x = _images()
    out = build_train_augment(name, out_size=out_size)(x, _gen())
    default_side = 64 if name in SIZE_KEEPING_AUGMENTS else 224  # the papers' 224 crops
    side = out_size or default_side
    assert out.shape == (4, 3, side, side) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # float input in [0,1] gives the same result as the uint8 it came from
    same = build_train_augment(name, out_size=out_size)(x.float() / 255, _gen())
    assert torch.allclose(out, same, atol=1e-5)


@pytest.mark.parametrize("name", TRAIN_AUGMENTS)
def test_same_seed_same_output_other_seed_other_output(name: str) -> None:
    x = _images(side=40)
    augment = build_train_augment(name, out_size=32)
    first, again = augment(x, _gen(7)), augment(x, _gen(7))
    assert torch.equal(first, again)
    if name != "none":
        assert not torch.equal(first, augment(x, _gen(8)))


def test_unknown_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown augmentation"):
        build_train_augment("cutout")


def test_pad_crop_flip_equals_a_manual_crop_and_flip() -> None:
    # He et al. 2015 §4.2: 4-pixel zero padding, a random 32×32 crop of it or of its flip.
    x = _images(n=16, side=32)
    augment = PadCropFlip()
    top, left, flip, size = augment.draw(x, _gen(3))
    out = augment(x, _gen(3))
    padded = F.pad(x, (4, 4, 4, 4)).float() / 255
    for i in range(16):
        crop = padded[i, :, top[i] : top[i] + 32, left[i] : left[i] + 32]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert size == 32


def test_pad_crop_flip_statistics() -> None:
    # Offsets uniform over the 9 positions 0..8 of a 40-pixel padded image; flips with p = 0.5.
    x = torch.zeros(4000, 1, 32, 32, dtype=torch.uint8)
    top, left, flip, _ = PadCropFlip().draw(x, _gen(0))
    counts = torch.bincount(torch.cat([top, left]), minlength=9)
    assert counts.numel() == 9 and int(counts.min()) > 0.8 * 8000 / 9
    assert 0.46 < float(flip.float().mean()) < 0.54


def test_affine_crops_equal_slicing_at_unit_scale() -> None:
    # A pixel-aligned box of the output size samples pixel centres exactly (bilinear weights 0/1).
    x = torch.rand(3, 2, 20, 30, generator=_gen(1))
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [5.0, 13.0, 8.0, 8.0], [12.0, 22.0, 8.0, 8.0]])
    flip = torch.tensor([False, True, False])
    out = affine_crops(x, boxes, flip, 8)
    expected = [x[0, :, 0:8, 0:8], x[1, :, 5:13, 13:21].flip(-1), x[2, :, 12:20, 22:30]]
    for got, want in zip(out, expected):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name, low, high", [("vgg_scale_jitter", 256, 512), ("resnet_scale", 256, 480)])
def test_scale_jitter_rescales_to_a_shorter_side_in_the_paper_range(name: str, low: int, high: int) -> None:
    # VGG §3.1: S ∈ [256, 512]; ResNet §3.4: S ∈ [256, 480]. On a horizontal ramp (value =
    # column / side) an image rescaled to shorter side S has slope 1/S per output pixel, so
    # each output's slope reveals the S it was drawn. S is the generator's first draw.
    side, n = 512, 48
    ramp = (torch.arange(side, dtype=torch.float32) / side).expand(n, 1, side, side).contiguous()
    out = build_train_augment(name)(ramp, _gen(4))
    drawn = torch.randint(low, high + 1, (n,), generator=_gen(4)).float()
    slope = (out[:, 0, 100, 150] - out[:, 0, 100, 50]).abs() / 100
    assert torch.allclose(slope, 1 / drawn, rtol=1e-3)
    measured_s = 1 / slope
    assert float(measured_s.min()) > low - 1 and float(measured_s.max()) < high + 1
    assert float(measured_s.max()) - float(measured_s.min()) > 0.7 * (high - low)  # the whole range is used


def test_inception_crop_areas_and_aspect_ratios() -> None:
    # Szegedy et al. 2014 §6: 8%–100% of the area, aspect ratio within [3/4, 4/3]; every box inside.
    x = torch.zeros(5000, 3, 60, 80)
    boxes = InceptionCrop().draw_boxes(x, _gen(2))
    top, left, height, width = boxes.unbind(1)
    area = height * width / (60 * 80)
    ratio = width / height
    fallback = (height == 60) & (width == 80)  # no box of 10 fitted: the whole image, as torchvision
    assert float(fallback.float().mean()) < 0.01
    kept = ~fallback
    assert float(area[kept].min()) >= 0.08 - 1e-6 and float(area[kept].max()) <= 1.0 + 1e-6
    assert float(ratio[kept].min()) >= 3 / 4 - 1e-5 and float(ratio[kept].max()) <= 4 / 3 + 1e-5
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + height <= 60 + 1e-4).all() and (left + width <= 80 + 1e-4).all())
    # Areas of accepted boxes spread over the whole range, not just small ones.
    assert float(area[kept].max()) > 0.8 and float(area[kept].min()) < 0.1


def test_fancy_pca_adds_one_colour_shift_per_image_along_the_eigenvectors() -> None:
    # Krizhevsky et al. 2012 §4.1: I_xy += [p1 p2 p3][α1λ1 α2λ2 α3λ3]ᵀ, α_i ~ N(0, 0.1) per image.
    n = 2000
    x = 0.3 + 0.4 * torch.rand(n, 3, 6, 6, generator=_gen(5))  # mid-range: no clamping
    out = fancy_pca_lighting(x.clone(), _gen(6))
    shift = out - x
    per_image = shift[:, :, :1, :1]
    assert torch.allclose(shift, per_image.expand_as(shift), atol=1e-6)  # constant over pixels
    eigvec = torch.tensor(IMAGENET_PCA_EIGENVECTORS)
    eigval = torch.tensor(IMAGENET_PCA_EIGENVALUES)
    coefficients = per_image[:, :, 0, 0] @ eigvec  # eigenvectors are orthonormal columns
    alpha = coefficients / eigval
    assert torch.allclose(alpha.mean(0), torch.zeros(3), atol=0.015)
    assert torch.allclose(alpha.std(0), torch.full((3,), 0.1), rtol=0.08)
    # …and nothing for a grey (1-channel) batch, which has no published components.
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(fancy_pca_lighting(grey, _gen()), grey)


def test_photometric_distortions_identity_at_factor_one() -> None:
    x = torch.rand(8, 3, 10, 10, generator=_gen(9))
    assert torch.allclose(photometric_distortions(x.clone(), _gen(), (1.0, 1.0)), x, atol=1e-6)
    changed = photometric_distortions(x.clone(), _gen())
    assert not torch.allclose(changed, x, atol=1e-3)
    assert float(changed.min()) >= 0 and float(changed.max()) <= 1


def test_photometric_distortions_match_pil_image_enhance() -> None:
    # Howard 2013 §2.1 used PIL's ImageEnhance (Brightness, Contrast, Color) with factors in
    # [0.5, 1.5] in a random order. Replay our generator's draws (3·n factors, then one random
    # permutation per image) through PIL. PIL truncates to uint8 after each blend (measured:
    # ours is 1–1.5/255 brighter on average, at most ~4/255 after three steps), hence 4.5/255.
    import numpy as np
    from PIL import Image, ImageEnhance

    n = 6
    pixels = torch.randint(0, 256, (n, 3, 16, 16), generator=_gen(3), dtype=torch.uint8)
    ours = photometric_distortions(pixels.float() / 255, _gen(11))
    replay = _gen(11)
    factors = (torch.rand(3 * n, generator=replay) + 0.5).view(3, n)
    order = torch.rand(n, 3, generator=replay).argsort(dim=1)
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for i in range(n):
        image = Image.fromarray(pixels[i].permute(1, 2, 0).numpy())
        for op in order[i].tolist():
            image = enhancers[op](image).enhance(float(factors[op, i]))
        expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        assert torch.allclose(ours[i], expected, atol=4.5 / 255), i


def test_folder_sample_transform_makes_batches_stack() -> None:
    transform = folder_sample_transform(True, 32)
    shapes = [(3, 40, 60), (3, 100, 50), (3, 20, 20), (3, 32, 32)]
    outs = [transform(torch.randint(0, 256, s, dtype=torch.uint8)) for s in shapes]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    stripes = torch.zeros(3, 64, 128, dtype=torch.uint8)
    stripes[:, :, 64:] = 255  # right half white: the centre crop of the 32×64 resize is half white
    centre = folder_sample_transform(False, 32)(stripes)
    assert int(centre[0, 0, 0]) == 0 and int(centre[0, 0, -1]) == 255
    assert pickle.loads(pickle.dumps(transform)).size == 32  # DataLoader workers can take it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", TRAIN_AUGMENTS)
def test_runs_on_the_gpu_with_a_gpu_generator(name: str) -> None:
    x = _images().cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = build_train_augment(name, out_size=32)(x, gen)
    assert out.is_cuda and out.shape == (4, 3, 32, 32)
    assert torch.equal(out, build_train_augment(name, out_size=32)(x, torch.Generator(device="cuda").manual_seed(0)))


def test_lecun_affine_with_zero_ranges_is_the_identity() -> None:
    x = _images(n=3, side=28, chans=1)
    still = LeCunAffine(max_shift=0, scale=0, squeeze=0, shear=0)(x, _gen())
    torch.testing.assert_close(still, x.float() / 255, rtol=0, atol=1e-5)  # grid rounding only


def test_lecun_affine_shear_is_horizontal_and_translation_moves_ink() -> None:
    # LeCun et al. 1998 §III.C.4: *horizontal* shearing — a horizontal stroke stays in its row,
    # a vertical stroke leans (its column changes from top to bottom).
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 14, 6:22] = 1.0  # horizontal stroke
    sheared = LeCunAffine(max_shift=0, scale=0, squeeze=0, shear=0.3)(x, _gen(1))
    rows_with_ink = (sheared[:, 0].sum(dim=2) > 0.05).nonzero()[:, 1]
    assert set(rows_with_ink.tolist()) == {14}
    y = torch.zeros(8, 1, 28, 28)
    y[:, :, 4:24, 14] = 1.0  # vertical stroke
    leaning = LeCunAffine(max_shift=0, scale=0, squeeze=0, shear=0.3)(y, _gen(1))
    top_col = leaning[:, 0, 5].argmax(dim=1)
    bottom_col = leaning[:, 0, 22].argmax(dim=1)
    assert bool((top_col != bottom_col).any())
    moved = LeCunAffine(max_shift=2, scale=0, squeeze=0, shear=0)(x, _gen(2))
    centres = (moved[:, 0].sum(dim=2) * torch.arange(28.0)).sum(dim=1) / moved[:, 0].sum(dim=(1, 2))
    assert float((centres - 14).abs().max()) <= 2.0 + 1e-4
    assert float((centres - 14).abs().max()) > 0.1


def test_elastic_affine_without_elasticity_is_lecun_affine() -> None:
    x = _images(n=5, side=28, chans=1)
    torch.testing.assert_close(ElasticAffine(alpha=0)(x, _gen(3)), LeCunAffine()(x, _gen(3)), rtol=0, atol=1e-6)


def test_elastic_displacement_is_smooth_local_and_per_image() -> None:
    # Simard et al. 2003 §2: a smoothed random field moves ink by a few pixels, differently in
    # each image and at each place (an affine map would move two distant dots alike).
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8, 8] = 1.0
    x[:, :, 20, 20] = 1.0
    out = ElasticAffine(max_shift=0, scale=0, squeeze=0, shear=0)(x, _gen(4))

    def centre(image: torch.Tensor) -> torch.Tensor:  # (row, column) centre of the ink
        mass, grid = image.sum(), torch.arange(float(image.shape[0]))
        return torch.stack([(image.sum(1) * grid).sum() / mass, (image.sum(0) * grid).sum() / mass])

    moves = torch.stack(
        [torch.stack([centre(img[0, :14, :14]) - 8, centre(img[0, 14:, 14:]) - 6]) for img in out]
    )  # (image, dot, axis) displacement of each dot
    assert float(moves.abs().max()) < 6.0  # local: at most a few pixels
    assert float(moves.abs().max()) > 0.3  # but it does move ink
    assert float((moves[:, 0] - moves[:, 1]).abs().max()) > 0.3  # the two dots move differently
    assert float(moves[:, 0].std(dim=0).min()) > 0.1  # and differently in each image
