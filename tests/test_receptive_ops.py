"""Receptive fields through every spatial op: hand-computed with the recursion of Araujo et al.,
"Computing receptive fields of convolutional neural networks", Distill 2019 (r_out = r_in +
(k − 1)·d·j_in, j_out = j_in·s), extended to fractional strides for upsampling; "?" where an op's
effect is not known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnatlas.analysis import analyze


class Lambda(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def fields(*layers: nn.Module, size: int = 16, chans: int = 4) -> list[tuple]:
    """(RF, jump, start) of each leaf row of nn.Sequential(*layers) on a chans×size×size input."""
    result = analyze(nn.Sequential(*layers), input_size=(chans, size, size))
    return [(row.receptive_field, row.jump, row.start) for row in result.layers]


def conv(k: int = 3, stride: int = 1, padding: int = 1, dilation: int = 1, **kw) -> nn.Conv2d:  # noqa: ANN003
    return nn.Conv2d(4, 4, k, stride=stride, padding=padding, dilation=dilation, **kw)


def test_bilinear_downsampling_then_conv() -> None:
    # Bilinear ×½ (align_corners=False): output o samples at 2o + ½, between inputs 2o and 2o+1:
    # r = 2, jump 2, first centre 1.0; a 3×3 conv then adds 2·2: r = 6.
    out = fields(Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear")), conv())
    assert out == [(2, 2, 1.0), (6, 2, 1.0)]


def test_nearest_downsampling_and_upsampling() -> None:
    # Nearest ×½ reads input 2o: r 1, jump 2; a 3×3 conv: 1 + 2·2 = 5.
    assert [f[:2] for f in fields(Lambda(lambda x: F.interpolate(x, scale_factor=0.5)), conv())] == [(1, 2), (5, 2)]
    # Nearest ×2: jump ½; a 3×3 conv over outputs o−1…o+1 reads inputs ⌊(o−1)/2⌋…⌊(o+1)/2⌋, two pixels.
    up = fields(nn.Upsample(scale_factor=2), conv())
    assert [f[:2] for f in up] == [(1, 0.5), (2, 0.5)]


def test_bilinear_upsampling_align_corners() -> None:
    # 8 → 15 with align_corners: samples at o·7/14 = o/2; even o fall on a pixel, odd o between two.
    out = fields(nn.Upsample(size=(15, 15), mode="bilinear", align_corners=True), size=8)
    assert out == [(2, 0.5, 0.5)]


def test_transposed_convolution_halves_the_jump() -> None:
    # A stride-2 3×3 conv (r 3, jump 2), then a 2×2 stride-2 transposed conv: output o reads input
    # o // 2 only, so r stays 3 and the jump halves to 1; a 3×3 conv then spans two inputs: 3 + 2 = 5.
    up = nn.ConvTranspose2d(4, 4, 2, stride=2)
    out = fields(conv(stride=2), up, conv())
    assert [f[:2] for f in out] == [(3, 2), (3, 1), (5, 1)]
    # 3×3, stride 2, padding 1: even outputs sum inputs o/2 and o/2 + 1 (taps 0 and 2): r 2, jump ½.
    assert fields(nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1))[0][:2] == (2, 0.5)


def test_pixel_shuffle_and_unshuffle() -> None:
    # Shuffle by 2 after a 3×3 conv: each output reads one input, jump ½; a 3×3 conv then reads
    # inputs ⌊(o−1)/2⌋…⌊(o+1)/2⌋: 3 + 1·1 = 4. Unshuffle by 2 is a 2×2 window at stride 2.
    shuffle = fields(nn.Conv2d(4, 16, 3, padding=1), nn.PixelShuffle(2), conv())
    assert [f[:2] for f in shuffle] == [(3, 1), (3, 0.5), (4, 0.5)]
    assert fields(nn.PixelUnshuffle(2))[0][:2] == (2, 2)


def test_dilated_convolutions() -> None:
    # Yu & Koltun 2016, §3: 3×3 convolutions dilated 1, 2, 4 have fields 3, 7, 15.
    out = fields(conv(dilation=1), conv(padding=2, dilation=2), conv(padding=4, dilation=4), size=32)
    assert [f[:2] for f in out] == [(3, 1), (7, 1), (15, 1)]


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_padding_modes_match_zero_padding(mode: str) -> None:
    zeros = fields(conv(5, padding=2))
    assert fields(conv(5, padding=2, padding_mode=mode)) == zeros == [(5, 1, 0.5)]
    assert fields(nn.ReflectionPad2d(2), conv(5, padding=0)) == [(1, 1, -1.5), (5, 1, 0.5)]


def test_adaptive_pooling() -> None:
    # 7 → 3: PyTorch's regions [0,3), [2,5), [4,7): three wide; mean stride 7/3; first centre 1.5.
    ((r, j, start),) = fields(nn.AdaptiveAvgPool2d(3), size=7)
    assert (r, start) == (3, 1.5) and j == pytest.approx(7 / 3, abs=1e-6)


def test_unknown_ops_give_question_marks_and_are_listed() -> None:
    net = nn.Sequential(conv(), Lambda(lambda x: torch.roll(x, 1, -1)), conv())
    result = analyze(net, input_size=(4, 16, 16))
    assert [row.receptive_field for row in result.layers] == [3, None, None]
    assert "roll" in result.field_unknown_ops
    text = result.to_text()
    assert "receptive field unknown" in text and "roll" in text
    circular = analyze(nn.Sequential(conv(padding_mode="circular")), input_size=(4, 8, 8))
    assert circular.layers[0].receptive_field is None and circular.field_unknown_ops
