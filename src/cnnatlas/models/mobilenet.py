"""MobileNet v1 — Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto & Adam,
"MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv:1704.04861 (2017).

Table 1: a full 3×3/2 convolution, then 13 depthwise-separable blocks (3×3 depthwise conv + BN +
ReLU, 1×1 pointwise conv + BN + ReLU), global average pooling and a fully connected layer.
§3.3's width multiplier α thins every layer (``width_mult``); the resolution multiplier ρ is just
the input size, since the head pools globally.

Layer names: ``features.conv1`` is the full convolution; ``features.conv2`` … ``features.conv14``
are the separable blocks, each with ``dw`` (depthwise) and ``pw`` (pointwise) parts, each a
conv/bn/relu triple (``features.conv2.dw.conv``); ``classifier`` is the FC layer.
:meth:`MobileNetV1.paper_layer_names` spells these ``conv2_dw``, ``conv2_pw``, ``fc``.

Channel rounding for α: ``int(c · α)`` for every width c of Table 1 (α = 0.75 gives 24, 48, …,
768), so the rounding never changes the layer structure; at α = 1 the widths are the table's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import he_normal, init_weights, normal, paper_names_by_prefix, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family

# -- blocks ------------------------------------------------------------------------------------


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: BN follows) → BN → ReLU, the unit of Fig. 3. ``groups=in`` = depthwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                    groups=groups,
                    bias=False,
                ),
                bn=nn.BatchNorm2d(out_channels),
                relu=nn.ReLU(inplace=True),
            )
        )


class DepthwiseSeparable(nn.Sequential):
    """Fig. 3 (right): 3×3 depthwise conv/BN/ReLU (``dw``, carries the stride) then 1×1
    pointwise conv/BN/ReLU (``pw``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            OrderedDict(
                dw=ConvBNReLU(in_channels, in_channels, 3, stride=stride, groups=in_channels),
                pw=ConvBNReLU(in_channels, out_channels, 1),
            )
        )


# -- main class --------------------------------------------------------------------------------

# Table 1 body: (output channels of the pointwise conv, stride of the depthwise conv) per block.
# Table 1 prints "Conv dw / s2" for the last depthwise layer, but its input and output are both
# 7×7: the stride is 1 there (as in the released models).
_TABLE1_FIRST_CONV = 32
_TABLE1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class MobileNetV1(AtlasModel):
    """MobileNet v1 with width multiplier ``width_mult`` (α) and any input resolution (ρ).

    Every stride-2 layer pads by 1, so any side ≥ 1 gives a ≥1×1 map: the minimum is 1 pixel
    (the paper's ρ only goes down to 128). The head pools globally (Table 1's "Avg Pool 7×7" at
    224×224) so other resolutions work unchanged.
    """

    min_input_size = 1

    def __init__(self, *, num_classes: int, in_chans: int, width_mult: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def width(channels: int) -> int:
            return max(1, int(channels * width_mult))

        self.width_mult = width_mult
        layers: list[tuple[str, nn.Module]] = [("conv1", ConvBNReLU(in_chans, width(_TABLE1_FIRST_CONV), 3, stride=2))]
        channels = width(_TABLE1_FIRST_CONV)
        for index, (out, stride) in enumerate(_TABLE1_BLOCKS, start=2):
            layers.append((f"conv{index}", DepthwiseSeparable(channels, width(out), stride)))
            channels = width(out)
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        # The paper uses no dropout (§4 trains with little regularisation); optional here.
        self.dropout = nn.Dropout(dropout) if dropout else None  # nn.Dropout rejects p outside [0, 1]
        self.classifier = nn.Linear(channels, num_classes)

        # The paper states no initialisation; we use the usual one for BN networks:
        # Kaiming-normal (fan-out) convolutions, BN weight 1 / bias 0, FC N(0, 0.01).
        init_weights(self, he_normal("fan_out"), normal(0.01))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = rebuild_like(
            self.classifier,
            lambda: init_weights(nn.Linear(self.num_features, num_classes), he_normal("fan_out"), normal(0.01)),
        )
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        """``features.conv2.dw`` → ``conv2_dw`` (and ``conv2_dw.bn`` …), ``classifier`` → ``fc``."""
        prefixes = {"features.conv1": "conv1", "global_pool": "avg_pool", "classifier": "fc"}
        for index in range(2, len(_TABLE1_BLOCKS) + 2):
            prefixes[f"features.conv{index}"] = f"conv{index}"
            prefixes[f"features.conv{index}.dw"] = f"conv{index}_dw"
            prefixes[f"features.conv{index}.pw"] = f"conv{index}_pw"
        return paper_names_by_prefix(self, prefixes)


# -- registered variants -----------------------------------------------------------------------

_PAPER = Paper(
    authors="A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam",
    title="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    year=2017,
    venue="arXiv:1704.04861",
    url="https://arxiv.org/abs/1704.04861",
)


def _alpha(name: str, alpha: float) -> Variant:
    """One of Table 6's rows: MobileNet-224 thinned by the width multiplier α (§3.3)."""
    description = f"{alpha} MobileNet-224: width multiplier α={alpha} (Table 1 with §3.3 thinning)"
    return Variant(name, description, {"width_mult": alpha})


# Table 6's rows; their published accuracy is in cnnatlas.published
_VARIANTS = (
    _alpha("mobilenet_v1_100", 1.0),
    _alpha("mobilenet_v1_075", 0.75),
    _alpha("mobilenet_v1_050", 0.5),
    _alpha("mobilenet_v1_025", 0.25),
)
register_family("mobilenet", _PAPER, MobileNetV1, _VARIANTS, recipe="mobilenet", **IMAGENET)
