"""cnnatlas.formulas held against the analyser on real modules (two copies of one fact must
agree); the formulas' own paper numbers are in their doctests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnatlas import formulas
from cnnatlas.analysis import analyze


@pytest.mark.parametrize(
    "n, k, s, p, d, ceil",
    [
        (227, 11, 4, 0, 1, False),
        (55, 3, 2, 0, 1, True),
        (112, 3, 2, 0, 1, True),
        (224, 3, 1, 1, 1, False),
        (33, 3, 2, 1, 2, False),
        (14, 3, 2, 1, 1, True),
        (7, 7, 1, 0, 1, False),
        (1, 2, 2, 0, 1, True),
        (3, 4, 2, 0, 1, True),
    ],  # ceil mode: a window may hang over the end
)
def test_output_size_matches_pytorch(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> None:
    pool = nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil)
    out = pool(torch.empty(1, 1, n, n, device="meta"))
    assert formulas.conv_output_size(n, k, s, p, d, ceil_mode=ceil) == out.shape[-1]


@pytest.mark.parametrize(
    "c_in, c_out, k, groups, side", [(3, 96, 11, 1, 55), (96, 256, 5, 2, 27), (32, 32, 3, 32, 112), (64, 128, 1, 1, 56)]
)
def test_conv_params_and_macs_match_the_analyser(c_in: int, c_out: int, k: int, groups: int, side: int) -> None:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups)
    row = analyze(conv, input_size=(c_in, side, side)).layers[0]
    assert row.params == formulas.conv_params(c_in, c_out, k, groups)
    assert row.weight_params == formulas.conv_params(c_in, c_out, k, groups, bias=False)
    assert row.macs == formulas.conv_macs(c_in, c_out, k, side, groups=groups)


@pytest.mark.parametrize("layers", [2, 3])
def test_stacked_3x3_matches_one_large_kernel(layers: int) -> None:
    channels = 16
    stack = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(layers)])
    big_k = formulas.stacked_receptive_field(3, layers)
    big = nn.Conv2d(channels, channels, big_k, padding=big_k // 2, bias=False)
    small_result = analyze(stack, input_size=(channels, 20, 20))
    big_result = analyze(big, input_size=(channels, 20, 20))
    assert small_result.layers[-1].receptive_field == big_result.layers[-1].receptive_field == big_k
    assert (small_result.totals["params"], big_result.totals["params"]) == formulas.stacked_conv_params(
        channels, 3, layers
    )


def test_depthwise_separable_ratio_matches_the_analyser() -> None:
    c_in, c_out, side = 64, 128, 28
    full = analyze(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), input_size=(c_in, side, side)).totals["macs"]
    separable = analyze(
        nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False)
        ),
        input_size=(c_in, side, side),
    ).totals["macs"]
    assert separable / full == pytest.approx(formulas.depthwise_separable_cost_ratio(c_out, 3), rel=1e-12)


class _Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3: int, c5: int, reduce: int | None) -> None:
        super().__init__()
        r3 = r5 = reduce or c_in
        self.b1 = nn.Conv2d(c_in, c1, 1, bias=False)
        self.r3 = nn.Conv2d(c_in, r3, 1, bias=False) if reduce else nn.Identity()
        self.b3 = nn.Conv2d(r3, c3, 3, padding=1, bias=False)
        self.r5 = nn.Conv2d(c_in, r5, 1, bias=False) if reduce else nn.Identity()
        self.b5 = nn.Conv2d(r5, c5, 5, padding=2, bias=False)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.proj = nn.Conv2d(c_in, reduce, 1, bias=False) if reduce else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(self.r3(x)), self.b5(self.r5(x)), self.proj(self.pool(x))], 1)


@pytest.mark.parametrize("reduce", [None, 64])
def test_inception_module_cost_matches_the_analyser(reduce: int | None) -> None:
    """Lecture notes (the Inception module example): 28×28×256 in, 1×1/128, 3×3/192, 5×5/96
    (+ 64-channel 1×1s)."""
    result = analyze(_Inception(256, 128, 192, 96, reduce), input_size=(256, 28, 28))
    cost = formulas.inception_module_cost(28, 256, 128, 192, 96, reduce3=reduce, reduce5=reduce, pool_proj=reduce)
    assert result.totals["macs"] == cost.macs == (854_196_224 if reduce is None else 271_351_808)
    assert result.layers[-1].output_shape == [1, cost.out_channels, 28, 28]
