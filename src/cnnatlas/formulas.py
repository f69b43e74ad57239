"""The closed-form arithmetic the lecture notes teach, one small function per fact.

Each function has a doctest with the notes' (or paper's) own numbers, and
tests/test_formulas.py holds them against the analyser on real modules, because two copies
of one fact drift (pycls's lesson). See docs/formulas.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "InceptionCost",
    "conv_macs",
    "conv_output_size",
    "conv_params",
    "depthwise_separable_cost_ratio",
    "inception_module_cost",
    "stacked_conv_params",
    "stacked_receptive_field",
]


def conv_output_size(
    n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output side of a convolution or pool: ⌊(n + 2p − d(k−1) − 1)/s⌋ + 1.

    ``ceil_mode=True`` rounds up instead, as Caffe's pooling layers (and GoogLeNet) do; like
    PyTorch, a last window that would start inside the right padding is dropped.

    AlexNet conv1 on 227×227 (the notes' walkthrough) and pool1:

    >>> conv_output_size(227, kernel=11, stride=4)
    55
    >>> conv_output_size(55, kernel=3, stride=2)
    27

    VGG's 3×3 convolutions with pad 1 keep the size; GoogLeNet's ceil-mode pool rounds up:

    >>> conv_output_size(224, kernel=3, padding=1)
    224
    >>> conv_output_size(112, kernel=3, stride=2), conv_output_size(112, kernel=3, stride=2, ceil_mode=True)
    (55, 56)
    """
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    # Rounding up lets a window hang over the end (a 2×2/2 pool of a 1×2 map gives 1×1, as in
    # PyTorch), so in ceil mode only an empty result means "does not fit".
    out = -(-span // stride) + 1 if ceil_mode else span // stride + 1
    if ceil_mode and (out - 1) * stride >= n + padding:  # the last window starts in the padding: drop it
        out -= 1
    if span < 0 and not (ceil_mode and out >= 1):
        raise ValueError(f"a {kernel}×{kernel} window (dilation {dilation}) does not fit in {n} + 2·{padding}")
    return out


def conv_params(c_in: int, c_out: int, kernel: int | tuple[int, int], groups: int = 1, bias: bool = True) -> int:
    """Parameters of a convolution: (k_h·k_w·C_in/groups)·C_out weights (+ C_out biases).

    AlexNet conv1, weights only ("(11·11·3)·96 = 34,848" in the notes), and with biases:

    >>> conv_params(3, 96, 11, bias=False), conv_params(3, 96, 11)
    (34848, 34944)

    A depthwise 3×3 convolution on 512 channels (MobileNet) has one 3×3 filter per channel:

    >>> conv_params(512, 512, 3, groups=512, bias=False)
    4608
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both C_in={c_in} and C_out={c_out}")
    return kh * kw * (c_in // groups) * c_out + (c_out if bias else 0)


def conv_macs(
    c_in: int, c_out: int, kernel: int | tuple[int, int], out_h: int, out_w: int | None = None, groups: int = 1
) -> int:
    """Multiply-accumulates of a convolution (bias excluded): weights × output positions.

    VGG16 conv1_1 (3→64, 3×3, 224×224 output) — 86,704,128, as in docs/formulas.md:

    >>> conv_macs(3, 64, 3, 224)
    86704128
    """
    out_w = out_h if out_w is None else out_w
    return conv_params(c_in, c_out, kernel, groups, bias=False) * out_h * out_w


def stacked_receptive_field(kernel: int, layers: int) -> int:
    """Receptive field of ``layers`` stride-1 k×k convolutions: 1 + layers·(k − 1).

    VGG's argument (Simonyan & Zisserman 2015, §2.3): two 3×3 see 5×5, three see 7×7.

    >>> stacked_receptive_field(3, 2), stacked_receptive_field(3, 3)
    (5, 7)
    """
    return 1 + layers * (kernel - 1)


def stacked_conv_params(channels: int, kernel: int, layers: int) -> tuple[int, int]:
    """(params of ``layers`` k×k convolutions with C channels in and out, params of the one
    large kernel with the same receptive field), biases excluded.

    Three 3×3 layers have 27C² weights where one 7×7 has 49C² (VGG §2.3); two 3×3 have 18C²
    against 25C² for a 5×5. With C = 1 the results are the coefficients:

    >>> stacked_conv_params(1, 3, 2), stacked_conv_params(1, 3, 3)
    ((18, 25), (27, 49))
    >>> stacked_conv_params(256, 3, 3)
    (1769472, 3211264)
    """
    big = stacked_receptive_field(kernel, layers)
    return layers * kernel * kernel * channels * channels, big * big * channels * channels


def depthwise_separable_cost_ratio(out_channels: int, kernel: int) -> float:
    """Cost of a depthwise-separable convolution relative to a full one: 1/N + 1/D_K²
    (Howard et al. 2017, MobileNets, §3.1, eq. 5).

    With 3×3 kernels and N = 512 output channels it costs 8 to 9 times less, as the paper says:

    >>> round(depthwise_separable_cost_ratio(512, 3), 4)
    0.1131
    >>> round(1 / depthwise_separable_cost_ratio(512, 3), 2)
    8.84
    """
    return 1 / out_channels + 1 / kernel**2


@dataclass(frozen=True)
class InceptionCost:
    """MACs of each convolution of an Inception module, and its output volume."""

    terms: dict[str, int]
    out_channels: int
    size: int

    @property
    def macs(self) -> int:
        return sum(self.terms.values())

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.size, self.size, self.out_channels


def inception_module_cost(
    size: int,
    c_in: int,
    c1: int,
    c3: int,
    c5: int,
    reduce3: int | None = None,
    reduce5: int | None = None,
    pool_proj: int | None = None,
) -> InceptionCost:
    """An Inception module on a size×size×c_in map: 1×1/c1, 3×3/c3 and 5×5/c5 branches and a
    3×3 max pool, all "same" padded. With ``reduce3``/``reduce5``/``pool_proj`` the 1×1
    bottlenecks of Szegedy et al. 2015 (Fig. 2b) are inserted; without them it is the naive
    module of Fig. 2a, whose pool branch passes all c_in channels through.

    The lecture notes' example (28×28×256 input; 1×1/128, 3×3/192, 5×5/96):

    >>> naive = inception_module_cost(28, 256, 128, 192, 96)
    >>> naive.macs, naive.output_shape
    (854196224, (28, 28, 672))

    With 64-channel reductions before the 3×3 and 5×5 and after the pool. The slides print
    "358M" for this; their own six terms add up to 271 M (see docs/formulas.md):

    >>> reduced = inception_module_cost(28, 256, 128, 192, 96, reduce3=64, reduce5=64, pool_proj=64)
    >>> reduced.macs, reduced.output_shape
    (271351808, (28, 28, 480))
    """
    positions = size * size
    terms = {"1x1": positions * c_in * c1}
    terms["3x3"] = positions * 9 * (reduce3 or c_in) * c3
    terms["5x5"] = positions * 25 * (reduce5 or c_in) * c5
    if reduce3:
        terms["3x3 reduce"] = positions * c_in * reduce3
    if reduce5:
        terms["5x5 reduce"] = positions * c_in * reduce5
    if pool_proj:
        terms["pool proj"] = positions * c_in * pool_proj
    return InceptionCost(terms=terms, out_channels=c1 + c3 + c5 + (pool_proj or c_in), size=size)
