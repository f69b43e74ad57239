"""Small networks for the experiments (docs/experiments.md): one skeleton, every design choice
the papers argue about an option, so that two arms of an experiment differ in exactly one thing.

The skeleton: an optional stem convolution → stages (each a *unit* then a down-sampling) →
a classifier head. The options, each tied to the claim it lets us test:

``unit``
    ``"conv"``: the stage's convolutions with the kernels in ``kernels`` — ``(3, 3)`` is two
    stacked 3×3 (VGG §2.3), ``(5,)`` one 5×5 with the same receptive field;
    ``"inception_naive"``: Szegedy et al. 2014 Fig. 2(a), 1×1, 3×3, 5×5 convolutions and a
    3×3 max pool side by side; ``"inception"``: Fig. 2(b), the same with 1×1 reductions before
    the 3×3 and 5×5 and a 1×1 projection after the pool (GoogLeNet's own ``Inception`` block),
    at equal output width; ``"separable"``: MobileNet's depthwise 3×3 + pointwise 1×1
    (Howard et al. 2017 Fig. 3, MobileNet's own block); ``"full"``: the full 3×3 convolution
    it replaces (Fig. 3 left).
``pool``
    ``"max2"`` 2×2/2 max pooling (VGG), ``"max3"`` overlapping 3×3/2 (AlexNet §3.4),
    ``"avg2"`` 2×2/2 average pooling, ``"stride"`` a 3×3/2 convolution instead of pooling.
``norm``
    ``"none"``, ``"lrn"`` (AlexNet §3.3 local response normalisation after each stage's last
    activation), ``"bn"`` (batch normalisation after every convolution).
``activation``
    ``"relu"``, ``"tanh"``, ``"sigmoid"`` (AlexNet §3.1, Fig. 1).
``head``
    ``"fc-fc"`` two hidden fully connected layers of ``head_width`` (AlexNet/VGG),
    ``"fc-narrow"`` the second one a quarter as wide, ``"fc"`` one linear layer on the
    flattened maps, ``"gap"`` global average pooling and one linear layer (NiN §3.2,
    GoogLeNet §5). The flattening heads first average-pool to 3×3 (as torchvision's VGG pools
    to 7×7), so any input side works.
``init``
    ``"he"`` (He et al. 2015b, the default: without batch normalisation PyTorch's own default
    leaves a six-layer net stuck at chance for the first epochs), ``"default"`` (PyTorch's),
    ``"normal"`` N(0, 10⁻²) with zero biases (VGG §3.1's random initialisation), ``"glorot"``
    (Glorot & Bengio 2010).

Module names are stable across options (``stage1.conv1``, ``head.fc1`` …), so a shallower
net's tensors load by name into a deeper one (``cnnatlas train --init-from``, VGG §3.1).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.errors import InputError
from cnnatlas.layers import ACTIVATIONS, ConvNormAct, LocalResponseNorm, he_normal, init_weights, normal
from cnnatlas.models.googlenet import PAPER as GOOGLENET_PAPER
from cnnatlas.models.googlenet import ConvUnit, Inception, InceptionWidths
from cnnatlas.models.mobilenet import _PAPER as MOBILENET_PAPER
from cnnatlas.models.mobilenet import ConvBNReLU, DepthwiseSeparable
from cnnatlas.models.vgg import PAPER as VGG_PAPER
from cnnatlas.registry import Variant, register_family

UNITS = ("conv", "inception_naive", "inception", "separable", "full")
POOLS = ("max2", "max3", "avg2", "stride")
NORMS = ("none", "lrn", "bn")
HEADS = ("fc-fc", "fc-narrow", "fc", "gap")
INITS = ("default", "normal", "glorot", "he")
HEAD_GRID = 3  # flattening heads see a 3×3 map


# -- blocks ------------------------------------------------------------------------------------
class NaiveInception(nn.Module):
    """Szegedy et al. 2014 Fig. 2(a): 1×1, 3×3 and 5×5 convolutions of ``branch`` filters each
    and a 3×3/1 max pool, concatenated; the pool passes all ``in_chans`` through, so the output
    has ``3·branch + in_chans`` channels ("an inevitable increase in the number of outputs from
    stage to stage", §4)."""

    def __init__(self, in_chans: int, branch: int, *, batch_norm: bool) -> None:
        super().__init__()
        self.branch1 = ConvUnit(in_chans, branch, 1, batch_norm=batch_norm)
        self.branch2 = ConvUnit(in_chans, branch, 3, padding=1, batch_norm=batch_norm)
        self.branch3 = ConvUnit(in_chans, branch, 5, padding=2, batch_norm=batch_norm)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def reduced_inception_widths(in_chans: int, branch: int) -> InceptionWidths:
    """Fig. 2(b) at the output width of :class:`NaiveInception`: ``branch`` filters per
    convolution branch, 1×1 reductions to ``branch // 2`` before the 3×3 and 5×5 (GoogLeNet's
    Table 1 reduces the 3×3 input by about half), and a pool projection to ``in_chans``."""
    reduce = max(1, branch // 2)
    return InceptionWidths(branch, reduce, branch, reduce, branch, in_chans)


class Stage(nn.Sequential):
    """One stage: the unit's layers, then the down-sampling (``pool``)."""


# -- main class --------------------------------------------------------------------------------
class MiniNet(AtlasModel):
    """The experiments' small network (see the module docstring for every option)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        widths: Sequence[int] = (16, 32, 64),
        kernels: Sequence[int] = (3, 3),
        unit: str = "conv",
        stem: int = 0,
        pool: str = "max2",
        norm: str = "none",
        activation: str = "relu",
        head: str = "fc-fc",
        head_width: int = 128,
        dropout: float = 0.0,
        init: str = "he",
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        for option, value, allowed in (
            ("unit", unit, UNITS),
            ("pool", pool, POOLS),
            ("norm", norm, NORMS),
            ("activation", activation, ACTIVATIONS),
            ("head", head, HEADS),
            ("init", init, INITS),
        ):
            if value not in allowed:
                raise InputError(f"mini networks: {option} must be one of {', '.join(allowed)}, got {value!r}")
        widths, kernels = tuple(int(w) for w in widths), tuple(int(k) for k in kernels)
        if not widths or min(widths) < 1 or not kernels or min(kernels) < 1 or any(k % 2 == 0 for k in kernels):
            raise InputError(f"mini networks need positive widths and odd kernels, got {widths} and {kernels}")
        self.unit, self.pool, self.norm, self.activation, self.head_kind = unit, pool, norm, activation, head
        bn = norm == "bn"
        chans = in_chans
        if stem:
            self.stem = ConvNormAct(in_chans, stem, 3, batch_norm=bn, activation=activation)
            chans = stem
        self.stages = nn.ModuleList()
        for width in widths:
            stage = Stage()
            if unit == "conv":
                for j, kernel in enumerate(kernels, start=1):
                    last = j == len(kernels)
                    stage.add_module(
                        f"conv{j}",
                        ConvNormAct(
                            chans, width, kernel, batch_norm=bn, activation=activation, lrn=last and norm == "lrn"
                        ),
                    )
                    chans = width
            elif unit == "inception_naive":
                stage.add_module("inception", NaiveInception(chans, width, batch_norm=bn))
                chans = 3 * width + chans
            elif unit == "inception":
                widths_b = reduced_inception_widths(chans, width)
                stage.add_module("inception", Inception(chans, widths_b, batch_norm=bn))
                chans = widths_b.out_chans
            elif unit == "separable":
                stage.add_module("conv1", DepthwiseSeparable(chans, width, stride=1))
                chans = width
            else:  # full
                stage.add_module("conv1", ConvBNReLU(chans, width, 3))
                chans = width
            if unit != "conv" and norm == "lrn":
                stage.add_module("lrn", LocalResponseNorm())
            stage.add_module("pool", self._downsample(chans, bn, activation))
            self.stages.append(stage)
        self.num_features = chans
        # 2×2/2 pooling floors odd sides, so each stage needs at least 2 pixels; the padded
        # 3×3/2 pool and strided convolution keep any side ≥ 1
        self.min_input_size = 2 ** len(widths) if pool in ("max2", "avg2") else 1
        self.head = self._make_head(chans, num_classes, head_width, dropout)
        self._init_weights(init)

    def _downsample(self, chans: int, bn: bool, activation: str) -> nn.Module:
        if self.pool == "max2":
            return nn.MaxPool2d(2, 2)
        if self.pool == "max3":
            return nn.MaxPool2d(3, 2, padding=1)
        if self.pool == "avg2":
            return nn.AvgPool2d(2, 2)
        return ConvNormAct(chans, chans, 3, stride=2, batch_norm=bn, activation=activation)

    def _make_head(self, chans: int, num_classes: int, width: int, dropout: float) -> nn.Sequential:
        head = nn.Sequential()
        if self.head_kind == "gap":
            head.add_module("pool", nn.AdaptiveAvgPool2d(1))
            head.add_module("flatten", nn.Flatten(1))
            head.add_module("fc", nn.Linear(chans, num_classes))
            return head
        head.add_module("pool", nn.AdaptiveAvgPool2d(HEAD_GRID))
        head.add_module("flatten", nn.Flatten(1))
        features = chans * HEAD_GRID * HEAD_GRID
        if self.head_kind == "fc":
            head.add_module("fc", nn.Linear(features, num_classes))
            return head
        second = width if self.head_kind == "fc-fc" else max(1, width // 4)
        for i, (fan_in, fan_out) in enumerate(((features, width), (width, second)), start=1):
            head.add_module(f"fc{i}", nn.Linear(fan_in, fan_out))
            head.add_module(f"act{i}", nn.ReLU(inplace=True))
            if dropout:  # nn.Dropout rejects p outside [0, 1]
                head.add_module(f"drop{i}", nn.Dropout(dropout))
        head.add_module("fc", nn.Linear(second, num_classes))
        return head

    def _init_weights(self, init: str) -> None:
        if init == "default":
            return
        draw = {"normal": normal(0.01), "glorot": nn.init.xavier_uniform_, "he": he_normal("fan_in")}[init]
        init_weights(self, draw, draw)

    # -- the interface ---------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        if hasattr(self, "stem"):
            x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head.fc
        self.head.fc = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        self.num_classes = num_classes


# -- registered variants -----------------------------------------------------------------------
# The papers whose design choices these nets isolate (one Paper record each, kept in its family file).
_VGG, _GOOGLENET, _MOBILENET = VGG_PAPER, GOOGLENET_PAPER, MOBILENET_PAPER

VARIANTS = (
    Variant(
        "mini_vgg",
        "experiment net: three VGG-style stages of stacked 3×3 convolutions, max pooling, an FC-FC head of 64",
        {"widths": (8, 16, 32), "kernels": (3, 3), "unit": "conv", "head_width": 64},
        paper=_VGG,
    ),
    Variant(
        "mini_inception",
        "experiment net: a 3×3 stem and two Inception modules (Fig. 2b; unit='inception_naive' for 2a)",
        {"widths": (16, 32), "unit": "inception", "stem": 32, "norm": "bn", "head": "gap"},
        paper=_GOOGLENET,
    ),
    Variant(
        "mini_mobilenet",
        "experiment net: a 3×3 stem and three depthwise-separable stages (unit='full' for full 3×3)",
        {"widths": (32, 64, 128), "unit": "separable", "stem": 16, "norm": "bn", "head": "gap"},
        paper=_MOBILENET,
    ),
)
# Each net names the paper whose design choice it isolates (mini_vgg's is also the family's).
register_family(
    "mini",
    _VGG,
    MiniNet,
    VARIANTS,
    input_size=(1, 40, 40),
    dataset="cluttered-mnist",
    num_classes=10,
    recipe="experiment",
)
