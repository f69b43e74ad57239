"""Network in Network: Lin, Chen & Yan, "Network In Network", ICLR 2014 (arXiv:1312.4400).

An *mlpconv* layer is a spatial convolution followed by two 1×1 convolutions (the paper's
"cascaded cross channel parametric pooling", named ``cccp`` in the authors' code), each with a
ReLU. Stacks of mlpconv layers with pooling in between end in an mlpconv whose last 1×1
convolution has one map per class; global average pooling turns those maps into logits — no
fully connected layers (§3.2).

The paper describes the architecture but not every layer's hyper-parameters; those come from the
authors' released configurations (cited per table below). Pools follow Caffe / cuda-convnet
(no padding, the output size rounded *up*), which ``ceil_mode=True`` reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import rebuild_like
from cnnatlas.registry import CIFAR10, IMAGENET, Paper, Variant, register_family


# -- blocks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MlpConvStage:
    """One mlpconv layer and what follows it.

    ``widths`` = (spatial conv, first cccp, second cccp); ``None`` as the last width means "one
    map per class" (the final stage). ``pool`` = (kind "max"/"avg", kernel, stride) or ``None``
    for the final stage, which ends in global average pooling instead.
    """

    kernel: int
    stride: int
    padding: int
    widths: tuple[int, int, int | None]
    pool: tuple[str, int, int] | None = None
    dropout: float = 0.0


# Names: conv{i} is stage i's spatial convolution, cccp{2i-1} and cccp{2i} its 1×1 convolutions,
# as in the authors' Caffe prototxt; relu_<layer> follows <layer>; pool{i}/drop{i} end stage i.
def _stage_modules(stage: MlpConvStage, index: int, in_chans: int, num_classes: int) -> list[tuple[str, nn.Module]]:
    conv_w, cccp_a_w, cccp_b_w = stage.widths
    cccp_b_w = num_classes if cccp_b_w is None else cccp_b_w
    a, b = 2 * index - 1, 2 * index
    modules: list[tuple[str, nn.Module]] = [
        (f"conv{index}", nn.Conv2d(in_chans, conv_w, stage.kernel, stride=stage.stride, padding=stage.padding)),
        (f"relu_conv{index}", nn.ReLU(inplace=True)),
        (f"cccp{a}", nn.Conv2d(conv_w, cccp_a_w, 1)),
        (f"relu_cccp{a}", nn.ReLU(inplace=True)),
        (f"cccp{b}", nn.Conv2d(cccp_a_w, cccp_b_w, 1)),
        (f"relu_cccp{b}", nn.ReLU(inplace=True)),
    ]
    if stage.pool is not None:
        kind, kernel, stride = stage.pool
        pool_cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
        modules.append((f"pool{index}", pool_cls(kernel, stride=stride, ceil_mode=True)))
    if stage.dropout:
        modules.append((f"drop{index}", nn.Dropout(stage.dropout)))
    return modules


# -- main class --------------------------------------------------------------------------------
class NiN(AtlasModel):
    """A stack of mlpconv stages ending in global average pooling.

    Modules live at the top level under the paper's names (``conv1``, ``cccp1``, ``pool1`` …).
    ``forward_features`` runs everything up to the final stage's last ReLU *before* its
    class-map cccp; ``forward_head`` is that class-map cccp, its ReLU (the authors' networks
    have one there too), the global average pool and the flatten.
    """

    def __init__(
        self, stages: tuple[MlpConvStage, ...], *, num_classes: int, in_chans: int, min_input_size: int
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.min_input_size = min_input_size
        names: list[str] = []
        chans = in_chans
        for index, stage in enumerate(stages, start=1):
            for name, module in _stage_modules(stage, index, chans, num_classes):
                self.add_module(name, module)
                names.append(name)
            chans = stage.widths[2] if stage.widths[2] is not None else num_classes
        # The class-map cccp and its ReLU are the classifier; everything before them is features.
        self._head_names = names[-2:] + [f"pool{len(stages)}"]
        self._feature_names = names[:-2]
        # The authors pool the final maps with a fixed 6×6 (ImageNet) or 8×8 (CIFAR) average that
        # covers the whole map at the paper's input size; an adaptive pool is the same there and
        # keeps the network working at other sizes.
        self.add_module(f"pool{len(stages)}", nn.AdaptiveAvgPool2d(1))
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation; the authors' prototxts use hand-tuned Gaussians
        # (σ 0.01/0.05) that are known to be fragile. Kaiming (He et al. 2015) suits the ReLUs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def classifier(self) -> nn.Conv2d:
        return getattr(self, self._head_names[0])

    def forward_features(self, x: Tensor) -> Tensor:
        for name in self._feature_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        for name in self._head_names:
            x = getattr(self, name)(x)
        return torch.flatten(x, 1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier

        def head() -> nn.Conv2d:
            conv = nn.Conv2d(old.in_channels, num_classes, 1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            return conv

        setattr(self, self._head_names[0], rebuild_like(old, head))
        self.num_classes = num_classes


# -- builder -----------------------------------------------------------------------------------
# ImageNet model: the authors' Caffe model-zoo prototxt "nin_imagenet" (gist d802a5849de39225bcc6
# by Min Lin): conv1 96@11×11/4, cccp1/2 96; max 3×3/2; conv2 256@5×5 pad 2, cccp3/4 256;
# max 3×3/2; conv3 384@3×3 pad 1, cccp5/6 384; max 3×3/2, dropout 0.5; conv4 1024@3×3 pad 1,
# cccp7 1024, cccp8 1000; ReLU; 6×6 average pool.
NIN_IMAGENET = (
    MlpConvStage(11, 4, 0, (96, 96, 96), pool=("max", 3, 2)),
    MlpConvStage(5, 1, 2, (256, 256, 256), pool=("max", 3, 2)),
    MlpConvStage(3, 1, 1, (384, 384, 384), pool=("max", 3, 2), dropout=0.5),
    MlpConvStage(3, 1, 1, (1024, 1024, None)),
)
# CIFAR-10 model (§4.1: "three stacked mlpconv layers … followed by a spatial max pooling
# layer"; dropout between them, §4.2): the authors' cuda-convnet layer file (github.com/mavenlin/
# cuda-convnet, NIN/) gives conv1 192@5×5 pad 2, cccp1 160, cccp2 96, max 3×3/2, dropout 0.5;
# the rest follows the pytorchcv port of the model-zoo prototxt (osmr/imgclsmob nin_cifar.py,
# 966,986 parameters): conv2 192@5×5 pad 2, cccp3/4 192, *average* 3×3/2 pool, dropout 0.5;
# conv3 192@3×3 pad 1, cccp5 192, cccp6 10; global 8×8 average.
NIN_CIFAR = (
    MlpConvStage(5, 1, 2, (192, 160, 96), pool=("max", 3, 2), dropout=0.5),
    MlpConvStage(5, 1, 2, (192, 192, 192), pool=("avg", 3, 2), dropout=0.5),
    MlpConvStage(3, 1, 1, (192, 192, None)),
)
STAGE_TABLES = {"imagenet": NIN_IMAGENET, "cifar": NIN_CIFAR}
# Smallest square inputs that run (tests hold these against smallest_working_input). A ceil-mode
# 3×3/2 pool turns 2 pixels into 1, so each pool must see ≥ 2. ImageNet: pool3 ≥ 2 ← pool2 ≥ 4 ←
# pool1 ≥ 8 ← conv1 (11×11/4) input ≥ 7·4 + 11 = 39. CIFAR: pool2 ≥ 2 ← pool1 ≥ 4.
MIN_INPUT_SIZES = {"imagenet": 39, "cifar": 4}


def _build(*, num_classes: int, in_chans: int, stages: str) -> NiN:
    """``stages`` names a table; the smallest input follows from it, so it is not an option."""
    return NiN(STAGE_TABLES[stages], num_classes=num_classes, in_chans=in_chans, min_input_size=MIN_INPUT_SIZES[stages])


# -- registered variants -----------------------------------------------------------------------
PAPER = Paper(
    authors="M. Lin, Q. Chen, S. Yan",
    title="Network In Network",
    year=2014,
    venue="ICLR 2014, arXiv:1312.4400",
    url="https://arxiv.org/abs/1312.4400",
)

VARIANTS = (
    # The paper reports no ImageNet result; the authors' model-zoo page states 59.36% top-1
    # accuracy (centre crop) — documented in docs/models/nin.md, not a paper number.
    Variant(
        "nin",
        "NiN ImageNet model: 4 mlpconv stages (96/256/384/1024) + global average pooling",
        {"stages": "imagenet"},
        recipe="nin_imagenet",
        **IMAGENET,
    ),
    Variant(
        "nin_cifar",
        "NiN CIFAR-10 model: 3 mlpconv stages (192-160-96, 192-192-192, 192-192-10) + GAP",
        {"stages": "cifar"},
        recipe="nin_cifar",
        **CIFAR10,
    ),
)
register_family("nin", PAPER, _build, VARIANTS)
