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
from cnnatlas.layers import he_normal, init_weights, rebuild_like
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


class MlpConv(nn.Module):
    """An mlpconv layer (Fig. 2, §3.1): a spatial convolution and a two-layer perceptron of 1×1
    convolutions (the authors' "cccp" layers), each followed by a ReLU.

    The final mlpconv's second cccp, whose maps are the class maps, is the network's classifier
    and lives in the head (a last width of ``None`` leaves it out here).
    """

    def __init__(self, in_chans: int, stage: MlpConvStage) -> None:
        super().__init__()
        conv_w, cccp1_w, cccp2_w = stage.widths
        self.conv = nn.Conv2d(in_chans, conv_w, stage.kernel, stride=stage.stride, padding=stage.padding)
        self.relu_conv = nn.ReLU(inplace=True)
        self.cccp1 = nn.Conv2d(conv_w, cccp1_w, 1)
        self.relu_cccp1 = nn.ReLU(inplace=True)
        self.cccp2 = nn.Conv2d(cccp1_w, cccp2_w, 1) if cccp2_w is not None else None
        self.relu_cccp2 = nn.ReLU(inplace=True) if cccp2_w is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu_cccp1(self.cccp1(self.relu_conv(self.conv(x))))
        if self.cccp2 is not None:
            x = self.relu_cccp2(self.cccp2(x))
        return x


# -- main class --------------------------------------------------------------------------------
class NiN(AtlasModel):
    """A stack of mlpconv stages ending in global average pooling (§3.2, Fig. 2).

    ``features`` holds ``mlpconv1``, ``pool1`` (, ``drop1``), ``mlpconv2`` … up to the final
    mlpconv's first cccp; the head is that mlpconv's class-map cccp (``classifier``), its ReLU
    (the authors' networks have one there too), the global average pool and the flatten.
    :meth:`paper_layer_names` gives every layer the authors' Caffe name (``conv1``, ``cccp1``,
    ``relu_cccp1``, ``pool1``, ``drop3`` …, ``cccp8`` for the classifier).
    """

    def __init__(
        self, stages: tuple[MlpConvStage, ...], *, num_classes: int, in_chans: int, min_input_size: int
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.min_input_size = min_input_size
        self.num_stages = len(stages)
        self.features = nn.Sequential()
        chans = in_chans
        for index, stage in enumerate(stages, start=1):
            self.features.add_module(f"mlpconv{index}", MlpConv(chans, stage))
            if stage.pool is not None:
                kind, kernel, stride = stage.pool
                pool_cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
                self.features.add_module(f"pool{index}", pool_cls(kernel, stride=stride, ceil_mode=True))
            if stage.dropout:
                self.features.add_module(f"drop{index}", nn.Dropout(stage.dropout))
            chans = stage.widths[2] or stage.widths[1]
        self.classifier = nn.Conv2d(chans, num_classes, 1)
        self.relu = nn.ReLU(inplace=True)
        # The authors pool the final maps with a fixed 6×6 (ImageNet) or 8×8 (CIFAR) average that
        # covers the whole map at the paper's input size; an adaptive pool is the same there and
        # keeps the network working at other sizes.
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        # The paper gives no initialisation; the authors' prototxts use hand-tuned Gaussians
        # (σ 0.01/0.05) that are known to be fragile. Kaiming (He et al. 2015) suits the ReLUs.
        init_weights(self, he_normal("fan_in"))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return torch.flatten(self.global_pool(self.relu(self.classifier(x))), 1)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier
        self.classifier = rebuild_like(
            old, lambda: init_weights(nn.Conv2d(old.in_channels, num_classes, 1), he_normal("fan_in"))
        )
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        # The authors' prototxt numbers the spatial convolutions per stage (conv{i}) and the 1×1
        # ones through the network (cccp{2i-1}, cccp{2i}); relu_<layer> follows <layer>.
        names: dict[str, str] = {}
        for index in range(1, self.num_stages + 1):
            stage = f"features.mlpconv{index}"
            layers = {"conv": f"conv{index}", "cccp1": f"cccp{2 * index - 1}", "cccp2": f"cccp{2 * index}"}
            names[stage] = f"mlpconv{index}"
            for attr, caffe in layers.items():
                names[f"{stage}.{attr}"] = caffe
                names[f"{stage}.relu_{attr}"] = f"relu_{caffe}"
            names[f"features.pool{index}"] = f"pool{index}"
            names[f"features.drop{index}"] = f"drop{index}"
        last = 2 * self.num_stages
        names.update(classifier=f"cccp{last}", relu=f"relu_cccp{last}", global_pool=f"pool{self.num_stages}")
        modules = dict(self.named_modules())
        return {path: name for path, name in names.items() if path in modules}


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
