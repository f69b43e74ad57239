"""DenseNet — Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017 (arXiv:1608.06993).

Every layer of a dense block receives the concatenation of all earlier feature maps of the block
and adds ``k`` (the growth rate) new ones. ImageNet variants (Table 1) are DenseNet-BC:
bottleneck layers BN-ReLU-Conv(1×1, 4k)-BN-ReLU-Conv(3×3, k) and transitions that halve the
channels (compression θ = 0.5). Their parameter keys are torchvision's
(``features.denseblock1.denselayer1.norm1`` …), so torchvision weights load unchanged; the
analyser's names come from :meth:`DenseNet.paper_layer_names` (conv1, pool1, dense_block1,
transition1, …). The CIFAR variants of Table 2 use a 3×3 first convolution, no max pool and
three dense blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import he_normal, init_weights, paper_names_by_prefix, rebuild_like
from cnnatlas.registry import CIFAR10, IMAGENET, Paper, Variant, register_family

# -- blocks ------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """H_ℓ of §3: BN-ReLU-Conv(3×3) ("basic") or, with ``bn_size``, the bottleneck form
    BN-ReLU-Conv(1×1, bn_size·k)-BN-ReLU-Conv(3×3, k) of DenseNet-B.

    Takes the list of all earlier feature maps of the block. With ``memory_efficient`` the
    concatenation, the first BN-ReLU and the first convolution are recomputed in the backward
    pass instead of being stored (Pleiss et al. 2017), which is where DenseNet spends its memory.
    """

    def __init__(
        self, in_features: int, growth_rate: int, bn_size: int | None, drop_rate: float, memory_efficient: bool
    ) -> None:
        super().__init__()
        first_out = bn_size * growth_rate if bn_size else growth_rate
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        if bn_size:
            self.conv1 = nn.Conv2d(in_features, first_out, kernel_size=1, bias=False)
            self.norm2 = nn.BatchNorm2d(first_out)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(first_out, growth_rate, kernel_size=3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_features, growth_rate, kernel_size=3, padding=1, bias=False)
        self.bottleneck = bool(bn_size)
        # torchvision applies dropout once, after the layer's last convolution.
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.memory_efficient = memory_efficient

    def _first_conv(self, inputs: Sequence[Tensor]) -> Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(list(inputs), 1))))

    def _first_conv_recomputed(self, inputs: Sequence[Tensor]) -> Tensor:
        # The backward-pass recomputation must not update BN running statistics a second
        # time (torchvision's checkpointed DenseNet does): the same batch-norm call with
        # momentum 0 leaves them as they are and saves the same tensors for backward.
        norm = self.norm1
        x = torch.cat(list(inputs), 1)
        if norm.training:
            x = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, True, 0.0, norm.eps)
        else:
            x = norm(x)
        return self.conv1(self.relu1(x))

    def _checkpointed_first_conv(self, inputs: Sequence[Tensor]) -> Tensor:
        calls = [0]

        def closure(*tensors: Tensor) -> Tensor:
            calls[0] += 1
            return self._first_conv(tensors) if calls[0] == 1 else self._first_conv_recomputed(tensors)

        return checkpoint.checkpoint(closure, *inputs, use_reentrant=False)

    def forward(self, inputs: Tensor | Sequence[Tensor]) -> Tensor:
        prev = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if self.memory_efficient and torch.is_grad_enabled() and any(t.requires_grad for t in prev):
            out = self._checkpointed_first_conv(prev)
        else:
            out = self._first_conv(prev)
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.dropout is not None:
            out = self.dropout(out)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output concatenates the input and every new map."""

    def __init__(
        self,
        num_layers: int,
        in_features: int,
        growth_rate: int,
        bn_size: int | None,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_features + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between dense blocks (§3, "Pooling layers"): BN-ReLU-Conv(1×1)-AvgPool(2×2, stride 2)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


# -- main class --------------------------------------------------------------------------------


class DenseNet(AtlasModel):
    """DenseNet with torchvision's module paths.

    ``stem="imagenet"``: 7×7/2 conv, BN, ReLU, 3×3/2 max pool (Table 1).
    ``stem="cifar"``: one 3×3 conv with 16 (or 2k for DenseNet-BC) outputs (§4.2 / Table 2).
    ``bn_size=None`` gives the basic layer; ``compression`` is θ of DenseNet-C (1.0 = none).
    The head is BN (norm5) → ReLU → global average pool → linear, as in torchvision and the
    paper (whose 7×7 / 8×8 average pool is global at the paper's input size).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        growth_rate: int,
        block_config: Sequence[int],
        num_init_features: int,
        bn_size: int | None = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        if stem == "imagenet":
            layers: list[tuple[str, nn.Module]] = [
                ("conv0", nn.Conv2d(in_chans, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        elif stem == "cifar":
            # The first dense layer starts with BN-ReLU, so the stem is a bare convolution.
            layers = [("conv0", nn.Conv2d(in_chans, num_init_features, kernel_size=3, padding=1, bias=False))]
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.features = nn.Sequential(OrderedDict(layers))
        self.stem = stem
        # Each 2×2 average pool (one per transition) floors the side; the stem's conv and max
        # pool (stride 2 each, padded) map side s to ceil(s/2) twice. Smallest side that keeps
        # a 1×1 map after all of them:
        pools = len(block_config) - 1
        self.min_input_size = 2**pools if stem == "cifar" else 4 * 2**pools - 3

        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate
            if i != len(block_config):
                out = int(compression * channels)
                self.features.add_module(f"transition{i}", Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        self.relu5 = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.block_config = tuple(block_config)

        # torchvision's initialisation (kaiming-normal convs, BN 1/0, zero linear bias).
        init_weights(self, he_normal("fan_in"))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.global_pool(self.relu5(x)), 1))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = rebuild_like(
            self.classifier, lambda: init_weights(nn.Linear(self.num_features, num_classes), he_normal("fan_in"))
        )
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        """Table 1's names: conv1, pool1, dense_block1 (layer1 …), transition1, …, fc."""
        prefixes = {
            "features.conv0": "conv1",
            "features.norm0": "conv1_bn",
            "features.relu0": "conv1_relu",
            "features.pool0": "pool1",
            "features.norm5": "norm5",
            "relu5": "relu5",
            "global_pool": "global_pool",
            "classifier": "fc",
        }
        for i in range(1, len(self.block_config) + 1):
            prefixes[f"features.denseblock{i}"] = f"dense_block{i}"
            for j in range(1, self.block_config[i - 1] + 1):
                prefixes[f"features.denseblock{i}.denselayer{j}"] = f"dense_block{i}.layer{j}"
            prefixes[f"features.transition{i}"] = f"transition{i}"
        return paper_names_by_prefix(self, prefixes)


# -- registered variants -----------------------------------------------------------------------

_PAPER = Paper(
    authors="G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger",
    title="Densely Connected Convolutional Networks",
    year=2017,
    venue="CVPR 2017, arXiv:1608.06993",
    url="https://arxiv.org/abs/1608.06993",
)


def _imagenet(name: str, description: str, options: dict[str, Any], torchvision: str | None = None) -> Variant:
    """A Table 1 network: 224×224 ImageNet, the 7×7/2 stem, four dense blocks."""
    return Variant(name, description, options, torchvision_name=torchvision, recipe="densenet_imagenet", **IMAGENET)


def _cifar(name: str, description: str, options: dict[str, Any]) -> Variant:
    """A §4.2 CIFAR-10 network: one 3×3 conv before three dense blocks."""
    return Variant(name, description, {**options, "stem": "cifar"}, recipe="densenet_cifar", **CIFAR10)


# Published results: cnnatlas.published
_VARIANTS = (
    _imagenet(
        "densenet121",
        "DenseNet-BC-121 (k=32), Table 1",
        dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
        "densenet121",
    ),
    _imagenet(  # not in the paper's tables
        "densenet161",
        "DenseNet-BC-161 (k=48, 96 initial features), released with the paper's code",
        dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96),
        "densenet161",
    ),
    _imagenet(
        "densenet169",
        "DenseNet-BC-169 (k=32), Table 1",
        dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
        "densenet169",
    ),
    _imagenet(
        "densenet201",
        "DenseNet-BC-201 (k=32), Table 1",
        dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
        "densenet201",
    ),
    _imagenet(
        "densenet264",
        "DenseNet-BC-264 (k=32), Table 1",
        dict(growth_rate=32, block_config=(6, 12, 64, 48), num_init_features=64),
    ),
    _cifar(
        "densenet40_k12",
        "DenseNet (L=40, k=12): 3 basic dense blocks of 12 layers, no compression",
        dict(growth_rate=12, block_config=(12, 12, 12), num_init_features=16, bn_size=None, compression=1.0),
    ),
    _cifar(
        "densenet_bc100_k12",
        "DenseNet-BC (L=100, k=12): bottleneck layers, compression 0.5",
        dict(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, bn_size=4, compression=0.5),
    ),
)
register_family("densenet", _PAPER, DenseNet, _VARIANTS)
