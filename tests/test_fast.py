"""The fast inference path: batch-norm folding, channels-last, autocast, checked against eager fp32."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.errors import InputError
from cnnatlas.fast import (
    TOLERANCE,
    ShiftedSumLRN,
    check_fast,
    compare_logits,
    cpu_flags,
    fast_model,
    fold_batchnorm,
    fold_conv_bn,
    foldable_pairs,
    native_bf16,
    resolve_dtype,
)
from cnnatlas.layers import LocalResponseNorm


def _with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters, as after
    training (a fresh network's mean 0 / variance 1 would make folding look right for free)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_conv_bn_equals_the_pair_in_eval_mode() -> None:
    torch.manual_seed(0)
    for bias, groups in ((False, 1), (True, 1), (False, 4)):
        conv = nn.Conv2d(4, 8, 3, padding=1, bias=bias, groups=groups)
        norm = _with_statistics(nn.BatchNorm2d(8))
        x = torch.randn(2, 4, 9, 9)
        with torch.no_grad():
            torch.testing.assert_close(fold_conv_bn(conv, norm)(x), norm(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "size", "expected_folds"),
    [
        # He et al. 2015 §3.4: "batch normalization (BN) right after each convolution" — all 19.
        ("resnet20", (3, 32, 32), 19),
        # Howard et al. 2017 Fig. 3: every depthwise and pointwise conv is followed by BN — all 27.
        ("mobilenet_v1_100", (3, 32, 32), 27),
        # He et al. 2016 (identity mappings) Fig. 4(e): BN → ReLU → conv; only conv1 → BN of the
        # stem and the conv → BN inside each of the 8 blocks read a convolution: 9 of 17.
        ("preact_resnet18", (3, 32, 32), 9),
        # Huang et al. 2017 §3: BN-ReLU-Conv(1×1)-BN-ReLU-Conv(3×3); the stem's conv0 → norm0 and
        # the 58 bottleneck 1×1 → BN pairs fold, the BN after a concatenation cannot: 59 of 121.
        ("densenet121", (3, 32, 32), 59),
    ],
)
def test_folding_finds_exactly_the_conv_bn_edges(name: str, size: tuple[int, int, int], expected_folds: int) -> None:
    torch.manual_seed(0)
    model = _with_statistics(cnnatlas.create_model(name))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, *size)
    fast = fast_model(model, x[:1])
    assert fast.settings.folded_batchnorms == expected_folds
    assert _batch_norms(fast.prepared) == _batch_norms(model) - expected_folds
    agreement = check_fast(model, fast, x)
    assert agreement.top1_agreement == 1.0 and agreement.max_relative_error <= TOLERANCE["fp32"]
    # the training model is never changed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert _batch_norms(model) == _batch_norms(fast.prepared) + expected_folds


def test_a_convolution_read_twice_is_not_folded() -> None:
    class Shortcut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second use of y

    model = _with_statistics(Shortcut())
    x = torch.randn(2, 3, 8, 8)
    assert foldable_pairs(model, x) == []
    folded, count = fold_batchnorm(model, x)
    assert count == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


@pytest.mark.parametrize("size", [5, 4, 1], ids=["odd window", "even window", "window of one"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "NHWC"])
def test_shifted_sum_lrn_is_pytorchs_local_response_norm(size: int, channels_last: bool) -> None:
    x = torch.randn(2, 7, 5, 6, generator=torch.Generator().manual_seed(0)) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    # AlexNet §3.3's constants (k = 2, α = 1e-4 per element) and a larger α that makes the window matter
    for alpha, beta, k in ((1e-4 * size, 0.75, 2.0), (2.0, 0.75, 1.0)):
        expected = torch.nn.functional.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)
        got = ShiftedSumLRN(size, alpha, beta, k)(x)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # the layer read from either LRN module means the same function
    paper = LocalResponseNorm(size=size, alpha=1e-4, beta=0.75, k=2.0)
    torch.testing.assert_close(ShiftedSumLRN.replacing(paper)(x), paper(x), rtol=1e-6, atol=1e-6)
    caffe = nn.LocalResponseNorm(size, alpha=2.0, beta=0.75, k=1.0)
    torch.testing.assert_close(ShiftedSumLRN.replacing(caffe)(x), caffe(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    # AlexNet 2012 §3.3: LRN after conv1 and conv2 (one module each, applied within each tower's
    # half of the maps); GoogLeNet (Szegedy et al. 2014, Fig. 3): after the stem's max pool and conv2
    ("name", "expected_lrns"),
    [("alexnet_2012", 2), ("googlenet", 2)],
)
def test_fast_copy_rewrites_every_lrn_and_agrees(name: str, expected_lrns: int) -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model(name).eval()
    x = torch.randn(2, *cnnatlas.model_info(name).input_size)
    fast = fast_model(model, x[:1])
    assert fast.settings.shifted_sum_lrns == expected_lrns
    assert not any(isinstance(m, (LocalResponseNorm, nn.LocalResponseNorm)) for m in fast.prepared.modules())
    assert sum(isinstance(m, LocalResponseNorm) for m in model.modules()) == expected_lrns  # the original kept
    agreement = check_fast(model, fast, x)
    assert agreement.top1_agreement == 1.0 and agreement.max_relative_error <= TOLERANCE["fp32"]


def test_fast_model_is_channels_last_and_keeps_the_interface() -> None:
    model = cnnatlas.create_model("resnet20").eval()
    fast = fast_model(model, torch.randn(1, 3, 32, 32))
    conv = next(m for m in fast.prepared.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.num_classes == model.num_classes and fast.model_name == "resnet20"
    out = fast(torch.randn(2, 3, 32, 32))
    assert out.dtype == torch.float32 and out.shape == (2, 10) and not out.requires_grad


def test_bf16_variant_within_its_stated_tolerance() -> None:
    # bf16 keeps 8 mantissa bits: each product is rounded by up to 2^-9 ≈ 0.2 %; the stated
    # tolerance (5 % of the largest logit) covers the accumulation through 20 layers.
    torch.manual_seed(0)
    model = _with_statistics(cnnatlas.create_model("resnet20"))
    x = torch.randn(8, 3, 32, 32)
    fast = fast_model(model, x[:1], dtype="bf16")
    agreement = check_fast(model, fast, x)
    assert agreement.tolerance == TOLERANCE["bf16"]
    assert agreement.ok, agreement
    assert agreement.max_relative_error > TOLERANCE["fp32"]  # it really ran in bf16


def test_native_bf16_is_read_from_the_flags_never_assumed(tmp_path) -> None:
    assert not native_bf16("cpu", flags=frozenset({"avx2", "fma", "avx512f"}))
    assert native_bf16("cpu", flags=frozenset({"avx512f", "avx512_bf16"}))
    assert native_bf16("cpu", flags=frozenset({"amx_bf16", "amx_tile"}))
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx2", "avx512_bf16"} <= cpu_flags(cpuinfo)
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert resolve_dtype("auto") == ("bf16" if native_bf16("cpu") else "fp32")


def test_bad_dtypes_are_input_errors() -> None:
    with pytest.raises(InputError, match="fp16 inference needs a GPU"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_dtype("int8")


def test_compare_logits_tells_ties_from_real_flips() -> None:
    reference = torch.tensor([[1.0, 1.0 + 1e-6, 0.0], [3.0, 0.0, 0.0]])
    tie = reference + torch.tensor([[2e-6, 0.0, 0.0], [0.0, 0.0, 0.0]])
    agreement = compare_logits(reference, tie)
    assert agreement.top1_agreement == 0.5 and agreement.flips_beyond_ties == 0 and agreement.ok
    flipped = reference.clone()
    flipped[1] = torch.tensor([0.0, 3.0, 0.0])
    assert not compare_logits(reference, flipped).ok


@pytest.mark.slow
@pytest.mark.parametrize("name", cnnatlas.list_models())
def test_every_registered_model_has_a_fast_copy_that_agrees(name: str, calibrate_batch_norm, deepest_networks) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    x = torch.randn(2, *cnnatlas.model_info(name).input_size)
    model = cnnatlas.create_model(name)
    if name in deepest_networks:
        # random statistics at every one of their 600 blocks overflow float32: use real ones
        model = calibrate_batch_norm(model, torch.randn(4, *x.shape[1:]))
    else:
        model = _with_statistics(model)
    agreement = check_fast(model, fast_model(model, x[:1]), x)
    assert agreement.ok, agreement


@pytest.mark.slow
def test_compiled_fast_copy_agrees_with_eager() -> None:
    torch.manual_seed(0)
    model = _with_statistics(cnnatlas.create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32)
    fast = fast_model(model, x[:1], compile=True)
    assert fast.settings.compiled
    agreement = check_fast(model, fast, x)
    assert agreement.ok and agreement.top1_agreement == 1.0, agreement


def test_float32_drift_widens_the_tolerance_only_for_real_drift() -> None:
    from cnnatlas.fast import TOLERANCE, agreement_with_eager

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4)).eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        reference = model(x)
    # this net's float32 is ~1e-7 from float64: a 1e-3 disagreement stays a disagreement
    off = reference + 1e-3 * reference.abs().max()
    agreement = agreement_with_eager(model, x, reference, off, "fp32")
    assert not agreement.ok and agreement.tolerance == TOLERANCE["fp32"]
