"""GoogLeNet: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842).

Two variants from one set of blocks:

* ``googlenet`` — the network of the paper's Table 1 and Figure 3, with the details of the
  authors' released Caffe model (BVLC ``bvlc_googlenet``): ReLU after every convolution, LRN
  after pool1 and after conv2, ceil-mode 3×3/2 max pools between stages (so 224 gives 7×7 at
  inception 5b), a *real* 5×5 convolution in every inception module's 5×5 branch, 7×7 average
  pooling, dropout 0.4, and the two auxiliary classifiers of §5 on inception 4a and 4d.
* ``googlenet_bn`` — state-dict compatible with torchvision's ``googlenet``: batch norm in every
  convolution unit, no LRN, a 2×2/2 max pool before 5a, dropout 0.2, and — a known torchvision
  bug kept for weight compatibility (pytorch/vision#906) — a 3×3 convolution in the "5×5" branch.

The inception module, the convolution unit and the auxiliary head are each written once and
parameterised; the two variants differ only in the data of :data:`LAYOUTS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.errors import InputError
from cnnatlas.layers import LocalResponseNorm, init_weights, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family


class GoogLeNetOutputs(NamedTuple):
    """What ``forward`` returns in training mode when the auxiliary heads are on (torchvision's
    field names and order)."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


# -- blocks ------------------------------------------------------------------------------------
class ConvUnit(nn.Module):
    """Convolution → (batch norm) → ReLU.

    With ``batch_norm`` this is torchvision's ``BasicConv2d`` (no conv bias, BN eps 0.001 —
    the TensorFlow default its weights were converted with); without, the paper's plain
    convolution with bias.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=padding, bias=not batch_norm)
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_chans, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.relu(x)


@dataclass(frozen=True)
class InceptionWidths:
    """One row of Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj."""

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int

    @property
    def out_chans(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


class Inception(nn.Module):
    """The inception module with dimension reductions (Figure 2b).

    ``kernel_5x5`` is the kernel of the "5×5" branch: 5 as published, 3 in torchvision's
    ``googlenet`` (its documented bug). Branch names are torchvision's, so weights interchange.
    """

    def __init__(self, in_chans: int, widths: InceptionWidths, *, batch_norm: bool, kernel_5x5: int = 5) -> None:
        super().__init__()
        w = widths
        self.branch1 = ConvUnit(in_chans, w.ch1x1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(
            ConvUnit(in_chans, w.ch3x3_reduce, 1, batch_norm=batch_norm),
            ConvUnit(w.ch3x3_reduce, w.ch3x3, 3, padding=1, batch_norm=batch_norm),
        )
        self.branch3 = nn.Sequential(
            ConvUnit(in_chans, w.ch5x5_reduce, 1, batch_norm=batch_norm),
            ConvUnit(w.ch5x5_reduce, w.ch5x5, kernel_5x5, padding=kernel_5x5 // 2, batch_norm=batch_norm),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            ConvUnit(in_chans, w.pool_proj, 1, batch_norm=batch_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def aux_pool(x: Tensor, kernel_size: int, stride: int, out_size: int) -> Tensor:
    """:class:`AuxPool`'s arithmetic; its choice depends on the map size."""
    if min(x.shape[-2:]) >= kernel_size:
        x = F.avg_pool2d(x, kernel_size, stride, ceil_mode=True)
    if tuple(x.shape[-2:]) != (out_size, out_size):
        x = F.adaptive_avg_pool2d(x, out_size)
    return x


# One call in torch.fx graphs: the size test runs when the graph runs, on the real map.
torch.fx.wrap("aux_pool")


class AuxPool(nn.Module):
    """The auxiliary heads' 5×5/3 average pool (§5), which maps the 14×14 maps of 4a/4d at
    224×224 input to the 4×4 maps the head's FC layer (2048 = 128·4·4 inputs) needs.

    At other input sizes the 5×5/3 pool does not give 4×4, so an adaptive average pool finishes
    the job (on maps smaller than 5×5 it does all of it). At 224×224 the result is exactly the
    paper's pool.
    """

    def __init__(self, kernel_size: int = 5, stride: int = 3, out_size: int = 4) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.out_size = kernel_size, stride, out_size

    def forward(self, x: Tensor) -> Tensor:
        return aux_pool(x, self.kernel_size, self.stride, self.out_size)

    def extra_repr(self) -> str:
        size = self.out_size
        return f"kernel_size={self.kernel_size}, stride={self.stride}, then adaptive to {size}×{size}"


class InceptionAux(nn.Module):
    """Auxiliary classifier (§5): average pool → 1×1 conv 128 + ReLU → FC 1024 + ReLU →
    dropout 0.7 → FC classes. Attribute names are torchvision's."""

    def __init__(
        self, in_chans: int, num_classes: int, *, pool: nn.Module, batch_norm: bool, dropout: float = 0.7
    ) -> None:
        super().__init__()
        self.pool = pool
        self.conv = ConvUnit(in_chans, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


# -- the network's data ------------------------------------------------------------------------
# Table 1: the nine inception modules (the "pool" rows are the max pools between stages).
INCEPTION_TABLE: list[tuple[str, InceptionWidths | None]] = [
    ("inception_3a", InceptionWidths(64, 96, 128, 16, 32, 32)),
    ("inception_3b", InceptionWidths(128, 128, 192, 32, 96, 64)),
    ("pool3", None),
    ("inception_4a", InceptionWidths(192, 96, 208, 16, 48, 64)),
    ("inception_4b", InceptionWidths(160, 112, 224, 24, 64, 64)),
    ("inception_4c", InceptionWidths(128, 128, 256, 24, 64, 64)),
    ("inception_4d", InceptionWidths(112, 144, 288, 32, 64, 64)),
    ("inception_4e", InceptionWidths(256, 160, 320, 32, 128, 128)),
    ("pool4", None),
    ("inception_5a", InceptionWidths(256, 160, 320, 32, 128, 128)),
    ("inception_5b", InceptionWidths(384, 192, 384, 48, 128, 128)),
]

# Module path of this file (torchvision's names, kept by both layouts) → paper/Caffe name.
_PAPER_NAMES = {
    "maxpool1": "pool1",
    "conv2": "conv2_reduce",
    "conv3": "conv2",
    "maxpool2": "pool2",
    "maxpool3": "pool3",
    "maxpool4": "pool4",
    "avgpool": "pool5",
    **{name.replace("_", ""): name for name, _ in INCEPTION_TABLE if name.startswith("inception")},
}


@dataclass(frozen=True)
class Layout:
    """What distinguishes the two variants."""

    batch_norm: bool
    lrn: bool  # LRN after pool1 and conv2 (paper) or none (torchvision)
    kernel_5x5: int
    pool4_kernel: int  # 3 (paper, Caffe) or 2 (torchvision)
    dropout: float
    caffe_init: bool  # BVLC's Caffe initialisation (paper) or torchvision's
    aux_pool_5x5: bool  # §5's 5×5/3 average pool in the auxiliary heads, or torchvision's adaptive one
    # Smallest square input that runs (tests hold it against smallest_working_input): every
    # ceil-mode 3×3/2 pool needs ≥ 2 pixels. Paper: pool4 ≥ 2 ← pool3 ≥ 4 ← pool2 ≥ 8 ← pool1 ≥ 16
    # ← conv1 (7×7/2, pad 3) input ≥ 31. torchvision's 2×2 pool4 runs on 1 pixel, so 15.
    min_input_size: int


LAYOUTS = {
    "paper": Layout(
        batch_norm=False,
        lrn=True,
        kernel_5x5=5,
        pool4_kernel=3,
        dropout=0.4,
        caffe_init=True,
        aux_pool_5x5=True,
        min_input_size=31,
    ),
    "torchvision": Layout(
        batch_norm=True,
        lrn=False,
        kernel_5x5=3,
        pool4_kernel=2,
        dropout=0.2,
        caffe_init=False,
        aux_pool_5x5=False,
        min_input_size=15,
    ),
}

# Display names of the modules inside an inception module / conv unit / aux head (Caffe's).
_BRANCH_NAMES = {
    "branch1": "1x1",
    "branch2.0": "3x3_reduce",
    "branch2.1": "3x3",
    "branch3.0": "5x5_reduce",
    "branch3.1": "5x5",
    "branch4.0": "pool",
    "branch4.1": "pool_proj",
}


def _lrn() -> LocalResponseNorm:
    # The paper gives no LRN parameters; BVLC's Caffe model uses local_size 5, alpha 1e-4,
    # beta 0.75, k 1 with Caffe's α/n convention — our paper-form layer computes the same
    # function with α = 1e-4/5.
    return LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)


# -- main class --------------------------------------------------------------------------------
class GoogLeNet(AtlasModel):
    """GoogLeNet (Inception v1) in either layout.

    Both layouts store their modules under torchvision's names (``conv1``, ``maxpool1``,
    ``conv2`` = the paper's conv2 reduce, ``conv3`` = the paper's conv2, ``inception3a`` …,
    ``avgpool``, ``dropout``, ``fc``, ``aux1``, ``aux2``; ``norm1``/``norm2`` are the paper's LRN
    layers and ``None`` in the torchvision layout); :meth:`paper_layer_names` maps every module
    path to the paper/Caffe name. In training mode with ``aux_logits`` the forward pass returns
    :class:`GoogLeNetOutputs` (logits, aux2, aux1); in eval mode the auxiliary heads are not run
    and only the logits come back.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float | None = None,
        aux_dropout: float = 0.7,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        if transform_input and in_chans != 3:
            raise InputError(f"transform_input re-normalises RGB input; it needs in_chans=3, got {in_chans}")
        self.layout = layout
        self.min_input_size = layout.min_input_size
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        bn = layout.batch_norm
        widths = {name: w for name, w in INCEPTION_TABLE if w is not None}

        def inception(in_chans: int, name: str) -> Inception:
            return Inception(in_chans, widths[name], batch_norm=bn, kernel_5x5=layout.kernel_5x5)

        def pool(kernel: int = 3) -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel, stride=2, ceil_mode=True)

        # Stem (Table 1 rows 1–3; Figure 3): conv 7×7/2, max pool, LRN, 1×1 reduce, 3×3, LRN, pool.
        self.conv1 = ConvUnit(in_chans, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = pool()
        self.norm1 = _lrn() if layout.lrn else None
        self.conv2 = ConvUnit(64, 64, 1, batch_norm=bn)
        self.conv3 = ConvUnit(64, 192, 3, padding=1, batch_norm=bn)
        self.norm2 = _lrn() if layout.lrn else None
        self.maxpool2 = pool()
        # Table 1's inception rows; each module's input depth is the row above's output.
        self.inception3a = inception(192, "inception_3a")
        self.inception3b = inception(256, "inception_3b")
        self.maxpool3 = pool()
        self.inception4a = inception(480, "inception_4a")
        self.inception4b = inception(512, "inception_4b")
        self.inception4c = inception(512, "inception_4c")
        self.inception4d = inception(512, "inception_4d")
        self.inception4e = inception(528, "inception_4e")
        self.maxpool4 = pool(layout.pool4_kernel)
        self.inception5a = inception(832, "inception_5a")
        self.inception5b = inception(832, "inception_5b")
        if aux_logits:  # §5: on the outputs of 4a (512 maps) and 4d (528 maps)

            def aux(in_chans: int) -> InceptionAux:
                aux_pool = AuxPool() if layout.aux_pool_5x5 else nn.AdaptiveAvgPool2d((4, 4))
                return InceptionAux(in_chans, num_classes, pool=aux_pool, batch_norm=bn, dropout=aux_dropout)

            self.aux1 = aux(512)
            self.aux2 = aux(528)
        # Head: the paper's 7×7/1 average pool covers the whole 7×7 map at 224; adaptive pooling
        # is identical there and keeps other input sizes working.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=layout.dropout if dropout is None else dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        if not self.layout.caffe_init:
            # torchvision's scheme: truncated N(0, 0.01²) weights; BN γ=1, β=0; biases default.
            draw = partial(nn.init.trunc_normal_, mean=0.0, std=0.01, a=-2, b=2)
            init_weights(self, draw, draw, zero_bias=False)
            return
        # The paper states none; BVLC's bvlc_googlenet uses Caffe's "xavier" filler
        # (U(±√(3/fan_in))) with constant 0.2 biases on hidden layers and 0 on the classifiers.
        classifiers = {id(self.fc)} | {id(m.fc2) for m in self.modules() if isinstance(m, InceptionAux)}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                bound = math.sqrt(3.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.constant_(m.bias, 0.0 if id(m) in classifiers else 0.2)

    # -- forward ---------------------------------------------------------------------------
    def _transform(self, x: Tensor) -> Tensor:
        # torchvision's option for its ported weights (trained on [-1, 1] inputs): re-normalise
        # ImageNet-normalised input.
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        return torch.cat([x[:, c : c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)], 1)

    def _trunk(self, x: Tensor, with_aux: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Table 1 / Figure 3 from the input to inception (5b), and the auxiliary heads' outputs
        on (4a) and (4d) when ``with_aux``."""
        if self.transform_input:
            x = self._transform(x)
        x = self.maxpool1(self.conv1(x))
        if self.norm1 is not None:
            x = self.norm1(x)
        x = self.conv3(self.conv2(x))  # conv2 reduce (1×1), conv2 (3×3)
        if self.norm2 is not None:
            x = self.norm2(x)
        x = self.maxpool2(x)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        return x, aux1, aux2

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))

    def forward(self, x: Tensor) -> Any:
        self.check_input(x)
        with_aux = self.training and self.aux_logits
        features, aux1, aux2 = self._trunk(x, with_aux)
        logits = self.forward_head(features)
        if with_aux:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits

    def training_loss(
        self, output: Any, target: Tensor, label_smoothing: float = 0.0, temperature: float = 1.0
    ) -> Tensor:
        """§5: "the loss of the auxiliary classifiers was weighted by 0.3" and added to the main
        loss during training."""
        head_loss = super().training_loss  # cross-entropy of one head's logits ÷ temperature
        if isinstance(output, Tensor):
            return head_loss(output, target, label_smoothing, temperature)
        main, aux2, aux1 = output
        losses = [head_loss(o, target, label_smoothing, temperature) for o in (main, aux1, aux2)]
        return losses[0] + 0.3 * (losses[1] + losses[2])

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = rebuild_like(self.fc, lambda: nn.Linear(self.fc.in_features, num_classes))
        if self.aux_logits:
            for head in (self.aux1, self.aux2):
                head.fc2 = rebuild_like(head.fc2, lambda head=head: nn.Linear(head.fc2.in_features, num_classes))
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        """Every module path → the paper/Caffe name, in either layout: ``inception3a`` → ``inception_3a``,
        ``inception3a.branch3.1.conv`` → ``inception_3a/5x5``, ``conv3.conv`` → ``conv2``."""
        names: dict[str, str] = {}
        for path, module in self.named_modules():
            if not path:
                continue
            top, _, rest = path.partition(".")
            parts = [_PAPER_NAMES.get(top, top)]
            if rest:
                for inner, caffe in _BRANCH_NAMES.items():
                    if rest == inner or rest.startswith(inner + "."):
                        rest = caffe + rest[len(inner) :]
                        break
                parts += rest.split(".")
            # A conv unit's convolution is the layer the paper names; its BN/ReLU are sub-layers.
            if isinstance(module, nn.Conv2d) and len(parts) > 1 and parts[-1] == "conv":
                parts.pop()
            display = "/".join(parts)
            if display != path:
                names[path] = display
        return names


# -- builder -----------------------------------------------------------------------------------
def _build(
    *,
    num_classes: int,
    in_chans: int,
    layout: str,
    aux_logits: bool,
    transform_input: bool = False,
    dropout: float | None = None,
    aux_dropout: float = 0.7,
) -> GoogLeNet:
    """``layout`` names one of :data:`LAYOUTS`; every other option goes to :class:`GoogLeNet`."""
    return GoogLeNet(
        LAYOUTS[layout],
        num_classes=num_classes,
        in_chans=in_chans,
        aux_logits=aux_logits,
        transform_input=transform_input,
        dropout=dropout,
        aux_dropout=aux_dropout,
    )


# -- registered variants -----------------------------------------------------------------------
PAPER = Paper(
    authors="C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich",
    title="Going Deeper with Convolutions",
    year=2014,
    venue="CVPR 2015, arXiv:1409.4842",
    url="https://arxiv.org/abs/1409.4842",
)

VARIANTS = (
    Variant(
        "googlenet",
        "GoogLeNet as published: LRN stem, 9 inception modules with real 5×5 branches, 2 aux heads",
        {"layout": "paper", "aux_logits": True},
    ),
    Variant(
        "googlenet_bn",
        "torchvision's GoogLeNet: BN conv units, 3×3 in the '5×5' branch, optional aux heads",
        {"layout": "torchvision", "aux_logits": False},
        torchvision_name="googlenet",
    ),
)
register_family("googlenet", PAPER, _build, VARIANTS, recipe="googlenet", **IMAGENET)
