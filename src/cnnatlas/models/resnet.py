"""The residual family: ResNet and its plain twins, pre-activation ResNet, Wide ResNet, ResNeXt
and stochastic depth — one residual skeleton, every variant a row of one table.

Papers:

- He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition" (CVPR 2016,
  arXiv:1512.03385): ImageNet ResNets of Table 1, shortcut options A/B/C of Table 3, plain
  nets of Fig. 3, CIFAR ResNets and plain nets of §4.2 / Fig. 6 / Table 6.
- He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks" (ECCV 2016,
  arXiv:1603.05027): pre-activation (BN → ReLU → conv) with clean identity paths.
- Zagoruyko, Komodakis 2016, "Wide Residual Networks" (BMVC 2016, arXiv:1605.07146).
- Xie, Girshick, Dollár, Tu, He 2017, "Aggregated Residual Transformations for Deep Neural
  Networks" (CVPR 2017, arXiv:1611.05431): ResNeXt, its grouped 3×3 as one grouped conv.
- Huang, Sun, Liu, Sedra, Weinberger 2016, "Deep Networks with Stochastic Depth" (ECCV 2016,
  arXiv:1603.09382): every variant takes ``drop_path_rate`` = 1 − p_L.

Four blocks, each with its own ``forward`` as its paper draws it: post-activation
:class:`BasicBlock` and :class:`Bottleneck` (He 2015; a grouped 3×3 makes the ResNeXt block, a
wider bottleneck WRN-50-2), and pre-activation :class:`PreActBasicBlock` (He 2016, WRN's
B(3,3)) and :class:`PreActBottleneck`. Their shared base :class:`ResidualBlock` adds the
shortcut (identity, option A zero-pad + subsample, 1×1 projection, or none for the plain
nets), WRN's optional dropout before the last convolution and stochastic depth. Parameter
keys follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.0``,
``fc``) so torchvision's state dicts load into the ImageNet ResNet, Wide ResNet and ResNeXt
variants unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.errors import InputError
from cnnatlas.layers import capturing_graph, he_normal, init_weights, rebuild_like
from cnnatlas.registry import CIFAR10, IMAGENET, Paper, Variant, register_family

SHORTCUTS = ("A", "B", "C", "none")

# ----------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2015 (§3.3, Table 3): identity with the extra channels zero-padded
    and the map subsampled by ``stride``; it adds no parameters.

    The zeros are appended after the input channels, as the authors' Torch code
    (fb.resnet.torch ``shortcutType A``: ``Concat(Identity, MulConstant(0))`` after a 1×1
    stride-s average pool, i.e. plain subsampling) does.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        if out_chans < in_chans:
            raise InputError(f"option-A shortcut cannot shrink {in_chans} to {out_chans} channels")
        self.in_chans, self.out_chans, self.stride = in_chans, out_chans, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_chans - self.in_chans))

    def extra_repr(self) -> str:
        return f"{self.in_chans}->{self.out_chans}, stride={self.stride} (zero-pad, no parameters)"


def survival_draw(like: Tensor, survival: float) -> Tensor:
    """1 with probability ``survival``, else 0: one stochastic-depth decision for a whole
    mini-batch, as a tensor, for captured graphs (see :func:`cnnatlas.layers.capturing_graph`)."""
    return (torch.rand((), device=like.device) < survival).to(like.dtype)


# A leaf of torch.fx graphs: traced as one call, so the draw happens each time the graph runs.
torch.fx.wrap("survival_draw")


def _conv(in_chans: int, out_chans: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False)


def _dropout(rate: float) -> nn.Dropout | None:
    return nn.Dropout(rate) if rate > 0 else None


class ResidualBlock(nn.Module):
    """What every residual block shares: ``out = after_sum(scale · F(x) + shortcut(x))``.

    The four block types below write their branch ``F`` explicitly (torchvision's parameter
    names, ``conv1``, ``bn1`` …); this base class adds the shortcut and the sum:

    ``shortcut``: "A" zero-pad + subsample where dimensions change, "B" 1×1 projection where
    they change (torchvision's), "C" projection everywhere, "none" the plain net (no sum).
    Post-activation blocks (He 2015) apply ReLU after the sum; pre-activation blocks (He 2016)
    add nothing after it, so the identity path stays clean, and their projection shortcut sees
    the pre-activated input (as in the authors' code and in WRN) and has no BN of its own.

    Stochastic depth (Huang et al. 2016): with ``survival`` = p_l < 1 the branch runs with
    probability p_l per mini-batch in training (one draw for the whole batch, as in the paper;
    the shortcut, identity or projection, always runs) and, at test time, always runs with its
    output scaled by p_l (eq. 5 of the paper).

    The residual is added in place, as torchvision does, so a block's output shares the
    storage of its last BN (or convolution) output: activation memory matches torchvision's.
    """

    preact = False

    def __init__(self, in_chans: int, out_chans: int, stride: int, *, shortcut: str, survival: float) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise InputError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        if not 0.0 < survival <= 1.0:
            raise InputError(f"survival probability must be in (0, 1], got {survival}")
        self.in_chans, self.out_chans, self.stride = in_chans, out_chans, stride
        self.has_shortcut = shortcut != "none"
        self.survival = float(survival)
        self._shortcut_kind = shortcut

    def _add_shortcut(self) -> None:
        """Register ``downsample`` (torchvision's name) after the branch's modules."""
        shortcut, stride = self._shortcut_kind, self.stride
        changes_shape = stride != 1 or self.in_chans != self.out_chans
        if shortcut == "C" or (shortcut == "B" and changes_shape):
            layers: list[nn.Module] = [nn.Conv2d(self.in_chans, self.out_chans, 1, stride, bias=False)]
            if not self.preact:
                layers.append(nn.BatchNorm2d(self.out_chans))
            self.downsample: nn.Module | None = nn.Sequential(*layers)
        elif shortcut == "A" and changes_shape:
            self.downsample = ZeroPadShortcut(self.in_chans, self.out_chans, stride)
        else:
            self.downsample = None
        # Post-activation nets apply ReLU after the sum; pre-activation nets do not.
        self.relu = None if self.preact else nn.ReLU(inplace=True)

    def preactivate(self, x: Tensor) -> Tensor:
        """BN-ReLU shared by the branch and a projection shortcut (pre-activation blocks)."""
        return x

    def branch(self, x: Tensor) -> Tensor:
        """F of the paper, from the (pre-activated) input."""
        raise NotImplementedError

    def residual(self, x: Tensor) -> Tensor:
        """The branch alone, from the block's raw input (used by tests and the analyser)."""
        return self.branch(self.preactivate(x))

    def _after_sum(self, out: Tensor) -> Tensor:
        return self.relu(out) if self.relu is not None else out

    def forward(self, x: Tensor) -> Tensor:
        act = self.preactivate(x)
        if not self.has_shortcut:  # plain net: no sum, no stochastic depth
            return self._after_sum(self.branch(act))
        if self.downsample is None:
            identity = x
        else:
            identity = self.downsample(act if self.preact else x)
        if self.survival == 1.0:
            out = self.branch(act)
        elif not self.training:
            out = self.branch(act) * self.survival  # test-time expected value, paper eq. 5
        elif capturing_graph(x):
            out = self.branch(act) * survival_draw(identity, self.survival)
        elif float(torch.rand((), device="cpu")) < self.survival:  # one draw per mini-batch (§3)
            out = self.branch(act)
        else:
            # Branch dropped: H_l = ReLU(id(H_{l-1})) (paper eq. 3); out of place so the
            # block's input, possibly saved for backward, is never modified.
            return torch.relu(identity) if self.relu is not None else identity
        out += identity
        return self._after_sum(out)

    def extra_repr(self) -> str:
        return f"survival={self.survival:g}" if self.survival < 1.0 else ""


class BasicBlock(ResidualBlock):
    """He 2015 Fig. 5 left (post-activation): 3×3 conv-BN-ReLU → 3×3 conv-BN, + shortcut, ReLU.

    ``dropout`` (WRN's) sits between the two convolutions.
    """

    def __init__(
        self,
        in_chans: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        survival: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_chans, planes, stride, shortcut=shortcut, survival=survival)
        self.conv1 = _conv(in_chans, planes, 3, stride)
        self.bn1, self.relu1 = nn.BatchNorm2d(planes), nn.ReLU(inplace=True)
        self.dropout = _dropout(dropout)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self._add_shortcut()

    def branch(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.bn2(self.conv2(out))


def bottleneck_convs(
    in_chans: int, planes: int, stride: int, groups: int, width_per_group: int, stride_on_1x1: bool
) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
    """The 1×1 reduce, 3×3 (grouped) and 1×1 expand convolutions of either bottleneck.

    The inner width is torchvision's ``int(planes · width_per_group / 64) · groups``: the plain
    bottleneck for 64/1, Wide ResNet-50-2 for 128/1, ResNeXt 32×4d for 4/32. The stride sits on
    the 3×3 ("ResNet v1.5", torchvision) unless ``stride_on_1x1`` (the paper's placement).
    """
    width = int(planes * width_per_group / 64) * groups
    first, middle = (stride, 1) if stride_on_1x1 else (1, stride)
    return (
        _conv(in_chans, width, 1, first),
        _conv(width, width, 3, middle, groups),
        _conv(width, planes * Bottleneck.expansion, 1),
    )


class Bottleneck(ResidualBlock):
    """He 2015 Fig. 5 right (post-activation): 1×1 reduce → 3×3 (grouped for ResNeXt, Xie et al.
    2017 Fig. 3c) → 1×1 expand to 4·planes, each conv-BN, ReLU between; + shortcut, ReLU.

    See :func:`bottleneck_convs` for the inner width and the stride's place.
    """

    expansion = 4

    def __init__(
        self,
        in_chans: int,
        planes: int,
        stride: int = 1,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        stride_on_1x1: bool = False,
        shortcut: str = "B",
        survival: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_chans, planes * self.expansion, stride, shortcut=shortcut, survival=survival)
        conv1, conv2, conv3 = bottleneck_convs(in_chans, planes, stride, groups, width_per_group, stride_on_1x1)
        self.conv1, self.bn1, self.relu1 = conv1, nn.BatchNorm2d(conv1.out_channels), nn.ReLU(inplace=True)
        self.conv2, self.bn2, self.relu2 = conv2, nn.BatchNorm2d(conv2.out_channels), nn.ReLU(inplace=True)
        self.dropout = _dropout(dropout)
        self.conv3, self.bn3 = conv3, nn.BatchNorm2d(self.out_chans)
        self._add_shortcut()

    def branch(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.bn3(self.conv3(out))


class PreActBasicBlock(ResidualBlock):
    """He 2016 Fig. 1b / WRN's B(3,3): BN-ReLU → 3×3 conv → BN-ReLU → (dropout) → 3×3 conv,
    + shortcut, nothing after the sum.

    ``preact_input=False`` drops the leading BN-ReLU of a block whose input was just normalised
    and activated by the stem (the authors' ImageNet pre-act net, "no_preact").
    """

    preact = True

    def __init__(
        self,
        in_chans: int,
        planes: int,
        stride: int = 1,
        *,
        preact_input: bool = True,
        shortcut: str = "B",
        survival: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_chans, planes, stride, shortcut=shortcut, survival=survival)
        self.bn1 = nn.BatchNorm2d(in_chans) if preact_input else None
        self.relu1 = nn.ReLU(inplace=True) if preact_input else None
        self.conv1 = _conv(in_chans, planes, 3, stride)
        self.bn2, self.relu2 = nn.BatchNorm2d(planes), nn.ReLU(inplace=True)
        self.dropout = _dropout(dropout)
        self.conv2 = _conv(planes, planes, 3)
        self._add_shortcut()

    def preactivate(self, x: Tensor) -> Tensor:
        return self.relu1(self.bn1(x)) if self.bn1 is not None else x

    def branch(self, x: Tensor) -> Tensor:
        out = self.relu2(self.bn2(self.conv1(x)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv2(out)


class PreActBottleneck(ResidualBlock):
    """He 2016's bottleneck (ResNet-164/1001): BN-ReLU → 1×1 → BN-ReLU → 3×3 → BN-ReLU → 1×1
    to 4·planes, + shortcut, nothing after the sum. Options as :class:`Bottleneck` and
    :class:`PreActBasicBlock`."""

    preact = True
    expansion = 4

    def __init__(
        self,
        in_chans: int,
        planes: int,
        stride: int = 1,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        stride_on_1x1: bool = False,
        preact_input: bool = True,
        shortcut: str = "B",
        survival: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_chans, planes * self.expansion, stride, shortcut=shortcut, survival=survival)
        conv1, conv2, conv3 = bottleneck_convs(in_chans, planes, stride, groups, width_per_group, stride_on_1x1)
        self.bn1 = nn.BatchNorm2d(in_chans) if preact_input else None
        self.relu1 = nn.ReLU(inplace=True) if preact_input else None
        self.conv1, self.bn2, self.relu2 = conv1, nn.BatchNorm2d(conv1.out_channels), nn.ReLU(inplace=True)
        self.conv2, self.bn3, self.relu3 = conv2, nn.BatchNorm2d(conv2.out_channels), nn.ReLU(inplace=True)
        self.dropout = _dropout(dropout)
        self.conv3 = conv3
        self._add_shortcut()

    def preactivate(self, x: Tensor) -> Tensor:
        return self.relu1(self.bn1(x)) if self.bn1 is not None else x

    def branch(self, x: Tensor) -> Tensor:
        out = self.relu2(self.bn2(self.conv1(x)))
        out = self.relu3(self.bn3(self.conv2(out)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv3(out)


BLOCK_TYPES: dict[tuple[str, bool], type[ResidualBlock]] = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}


def survival_probabilities(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Linear decay of Huang et al. 2016 eq. 4: p_l = 1 − l/L · (1 − p_L), l = 1 … L,
    with ``drop_path_rate`` = 1 − p_L (the last block's drop probability)."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise InputError(f"drop_path_rate (1 − p_L) must be in [0, 1), got {drop_path_rate}")
    return [1.0 - block / num_blocks * drop_path_rate for block in range(1, num_blocks + 1)]


@contextlib.contextmanager
def count_executed_blocks(model: nn.Module) -> Iterator[dict[str, int]]:
    """Count, per block path, how often each residual branch ran inside the ``with`` body.

    Hooks the first convolution of every branch (it runs iff the branch runs), so the hot path
    carries no counters; the hooks are removed on exit.
    """
    counts: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, ResidualBlock):
            counts[name] = 0

            def hook(*_: Any, key: str = name) -> None:
                counts[key] += 1

            handles.append(module.conv1.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------------------
# Main class
# ----------------------------------------------------------------------------------------


class ResNet(AtlasModel):
    """A residual (or plain) network: stem → stages of residual blocks → pool → fc.

    ``stem="imagenet"``: 7×7/2 conv, BN, ReLU, 3×3/2 max pool (Table 1 "conv1", "pool1").
    ``stem="cifar"``: one 3×3 conv of ``stem_width`` (§4.2), followed by BN-ReLU in
    post-activation nets; pre-activation CIFAR nets start their first block with BN-ReLU
    instead, as in the authors' and WRN's code.
    Stages: ``depths[i]`` blocks of ``widths[i]`` planes, the first of each stage after the
    first with stride 2. Pre-activation nets end with BN-ReLU before pooling (He 2016 §3.2).
    The head is global average pooling and one linear layer, as in every paper here (adaptive,
    so any input side works, as in torchvision).
    """

    def __init__(
        self,
        *,
        block: str,
        depths: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        stem_width: int = 64,
        preact: bool = False,
        shortcut: str = "B",
        groups: int = 1,
        width_per_group: int = 64,
        stride_on_1x1: bool = False,
        drop_path_rate: float = 0.0,
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        _check_options(block, stem, shortcut, groups, width_per_group, drop_path_rate)
        self.block, self.preact, self.shortcut = block, preact, shortcut
        self.drop_path_rate = drop_path_rate
        stem_activates = self._make_stem(in_chans, stem, stem_width)
        options: dict[str, Any] = {"shortcut": shortcut, "dropout": dropout}
        if block == "bottleneck":
            options.update(groups=groups, width_per_group=width_per_group, stride_on_1x1=stride_on_1x1)
        chans = self._make_stages(stem_width, depths, widths, BLOCK_TYPES[block, preact], options, stem_activates)
        self._make_head(chans, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stem(self, in_chans: int, stem: str, stem_width: int) -> bool:
        """conv1 (+ BN-ReLU unless a pre-activation CIFAR net) (+ pool1 for ImageNet); returns
        whether the stem ends activated."""
        self.conv1 = nn.Conv2d(in_chans, stem_width, *((7, 2, 3) if stem == "imagenet" else (3, 1, 1)), bias=False)
        activates = stem == "imagenet" or not self.preact
        self.bn1 = nn.BatchNorm2d(stem_width) if activates else None
        self.relu = nn.ReLU(inplace=True) if activates else None
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else None
        return activates

    def _make_stages(
        self,
        chans: int,
        depths: Sequence[int],
        widths: Sequence[int],
        block_type: type[ResidualBlock],
        options: dict[str, Any],
        stem_activates: bool,
    ) -> int:
        """``layer1`` … (torchvision's names); returns the channels of the last stage."""
        survivals = iter(survival_probabilities(sum(depths), self.drop_path_rate))
        for index, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                first = index == 0 and j == 0
                if self.preact:
                    # the stem's BN-ReLU already activated the very first block's input
                    options["preact_input"] = not (stem_activates and first)
                stride = 2 if (index > 0 and j == 0) else 1
                blocks.append(block_type(chans, planes, stride, survival=next(survivals), **options))
                chans = blocks[-1].out_chans
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        return chans

    def _make_head(self, chans: int, num_classes: int) -> None:
        self.bn_final = nn.BatchNorm2d(chans) if self.preact else None
        self.relu_final = nn.ReLU(inplace=True) if self.preact else None
        self.num_features = chans
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(chans, num_classes)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's scheme (He et al. 2015 init, [13] of the ResNet paper): Kaiming normal
        # (fan_out) convolutions, BN γ=1 β=0, PyTorch's default init for the fc layer.
        init_weights(self, he_normal("fan_out"), zero_bias=False)
        if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.constant_(module.bn3.weight, 0)
                elif isinstance(module, BasicBlock):
                    nn.init.constant_(module.bn2.weight, 0)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``layer1`` … ``layerN`` (conv2_x … of the paper), in order."""
        return [module for name, module in self.named_children() if name.startswith("layer")]

    # -- the interface -------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
        if self.bn_final is not None:
            x = self.relu_final(self.bn_final(x))
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = rebuild_like(self.fc, lambda: nn.Linear(self.num_features, num_classes))
        self.num_classes = num_classes

    def blocks(self) -> list[ResidualBlock]:
        """Every residual block in network order (l = 1 … L of stochastic depth)."""
        return [m for m in self.modules() if isinstance(m, ResidualBlock)]

    def paper_layer_names(self) -> dict[str, str]:
        # He 2015 Table 1 names the stem conv1/pool1 and the stages conv2_x … conv5_x; the CIFAR
        # nets (§4.2) follow the same scheme, conv2_x … conv4_x for their three stages.
        names = {"conv1": "conv1", "avgpool": "avg_pool", "fc": "fc"}
        if self.maxpool is not None:
            names["maxpool"] = "pool1"
        for index, stage in enumerate(self.stages):
            names[f"layer{index + 1}"] = f"conv{index + 2}_x"
            for j in range(len(stage)):
                names[f"layer{index + 1}.{j}"] = f"conv{index + 2}_{j + 1}"
        return names


def _check_options(block: str, stem: str, shortcut: str, groups: int, width_per_group: int, drop_path: float) -> None:
    if block not in ("basic", "bottleneck"):
        raise InputError(f"block must be 'basic' or 'bottleneck', got {block!r}")
    if stem not in ("imagenet", "cifar"):
        raise InputError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
    if block == "basic" and (groups != 1 or width_per_group != 64):
        raise InputError("basic blocks take no groups/width_per_group (use block='bottleneck')")
    if shortcut not in SHORTCUTS:
        raise InputError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
    if shortcut == "none" and drop_path > 0:
        raise InputError("stochastic depth needs shortcuts: a plain net cannot drop a block")


# ----------------------------------------------------------------------------------------
# Registered variants: one table per paper
# ----------------------------------------------------------------------------------------

_RESNET = Paper(
    "K. He, X. Zhang, S. Ren, J. Sun",
    "Deep Residual Learning for Image Recognition",
    2015,
    "CVPR 2016, arXiv:1512.03385",
    "https://arxiv.org/abs/1512.03385",
)
_PREACT = Paper(
    "K. He, X. Zhang, S. Ren, J. Sun",
    "Identity Mappings in Deep Residual Networks",
    2016,
    "ECCV 2016, arXiv:1603.05027",
    "https://arxiv.org/abs/1603.05027",
)
_WRN = Paper(
    "S. Zagoruyko, N. Komodakis",
    "Wide Residual Networks",
    2016,
    "BMVC 2016, arXiv:1605.07146",
    "https://arxiv.org/abs/1605.07146",
)
_RESNEXT = Paper(
    "S. Xie, R. Girshick, P. Dollár, Z. Tu, K. He",
    "Aggregated Residual Transformations for Deep Neural Networks",
    2017,
    "CVPR 2017, arXiv:1611.05431",
    "https://arxiv.org/abs/1611.05431",
)
_SD = Paper(
    "G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger",
    "Deep Networks with Stochastic Depth",
    2016,
    "ECCV 2016, arXiv:1603.09382",
    "https://arxiv.org/abs/1603.09382",
)

_IMAGENET_STEM = {"stem": "imagenet", "stem_width": 64, "widths": (64, 128, 256, 512)}
_CIFAR_STEM = {"stem": "cifar", "stem_width": 16, "widths": (16, 32, 64)}
_BASIC_18, _STAGES_34 = (2, 2, 2, 2), (3, 4, 6, 3)
_STAGES_101, _STAGES_152 = (3, 4, 23, 3), (3, 8, 36, 3)


def _imagenet(name: str, description: str, options: dict[str, Any], torchvision: str | None = None) -> Variant:
    """An ImageNet network: Table 1's 7×7/2 stem and 64…512 stage widths unless ``options`` say otherwise."""
    return Variant(
        name,
        description,
        {**_IMAGENET_STEM, **options},
        torchvision_name=torchvision,
        recipe="resnet_imagenet",
        **IMAGENET,
    )


def _cifar(name: str, description: str, recipe: str, options: dict[str, Any]) -> Variant:
    """A CIFAR-10 network; ``options`` give its stem (a 3×3 conv) and stages."""
    return Variant(name, description, options, recipe=recipe, **CIFAR10)


def _cifar_resnet(n: int, **extra: Any) -> dict[str, Any]:
    """§4.2: 6n + 2 layers, three stages of n basic blocks; option A by default."""
    return {**_CIFAR_STEM, "block": "basic", "depths": (n, n, n), "shortcut": "A", **extra}


def _wrn(depth: int, k: int) -> dict[str, Any]:
    """WRN-d-k: (d − 4)/6 pre-activation B(3,3) blocks per stage of widths 16k, 32k, 64k."""
    n = (depth - 4) // 6
    return {
        "stem": "cifar",
        "stem_width": 16,
        "block": "basic",
        "depths": (n, n, n),
        "widths": (16 * k, 32 * k, 64 * k),
        "preact": True,
        "shortcut": "B",
        "dropout": 0.0,
    }


def _resnext29(cardinality: int) -> dict[str, Any]:
    """ResNeXt-29 (Table 7, the authors' CIFAR code): 3×3 64 stem, 3 stages of 3 bottlenecks
    with 256/512/1024 outputs, bottleneck width 64 per group at the first stage."""
    return {
        "stem": "cifar",
        "stem_width": 64,
        "block": "bottleneck",
        "depths": (3, 3, 3),
        "widths": (64, 128, 256),
        "groups": cardinality,
        "width_per_group": 64,
        "shortcut": "B",
    }


# --- He et al. 2015: ImageNet (Table 1, shortcut option B as in torchvision) and CIFAR-10 (§4.2,
# 6n + 2 layers, option A)
_RESNET_VARIANTS = (
    _imagenet(
        "resnet18", "18-layer ResNet of Table 1 (basic blocks)", {"block": "basic", "depths": _BASIC_18}, "resnet18"
    ),
    _imagenet(
        "resnet34", "34-layer ResNet of Table 1 (basic blocks)", {"block": "basic", "depths": _STAGES_34}, "resnet34"
    ),
    _imagenet(
        "resnet50", "50-layer bottleneck ResNet of Table 1", {"block": "bottleneck", "depths": _STAGES_34}, "resnet50"
    ),
    _imagenet(
        "resnet101",
        "101-layer bottleneck ResNet of Table 1",
        {"block": "bottleneck", "depths": _STAGES_101},
        "resnet101",
    ),
    _imagenet(
        "resnet152",
        "152-layer bottleneck ResNet of Table 1",
        {"block": "bottleneck", "depths": _STAGES_152},
        "resnet152",
    ),
    _imagenet(
        "plain18",
        "18-layer plain net (Fig. 3 middle: the ResNet-18 stack without shortcuts)",
        {"block": "basic", "depths": _BASIC_18, "shortcut": "none"},
    ),
    _imagenet(
        "plain34",
        "34-layer plain net of Fig. 3 (the ResNet-34 stack without shortcuts)",
        {"block": "basic", "depths": _STAGES_34, "shortcut": "none"},
    ),
    _cifar("resnet20", "CIFAR ResNet-20 (§4.2, n = 3)", "resnet_cifar", _cifar_resnet(3)),
    _cifar("resnet32", "CIFAR ResNet-32 (§4.2, n = 5)", "resnet_cifar", _cifar_resnet(5)),
    _cifar("resnet44", "CIFAR ResNet-44 (§4.2, n = 7)", "resnet_cifar", _cifar_resnet(7)),
    _cifar("resnet56", "CIFAR ResNet-56 (§4.2, n = 9)", "resnet_cifar", _cifar_resnet(9)),
    _cifar("resnet110", "CIFAR ResNet-110 (§4.2, n = 18)", "resnet110_cifar", _cifar_resnet(18)),
    _cifar("resnet1202", "CIFAR ResNet-1202 (§4.2, n = 200)", "resnet110_cifar", _cifar_resnet(200)),
    _cifar("plain20", "CIFAR plain-20 (Fig. 6 left)", "resnet_cifar", _cifar_resnet(3, shortcut="none")),
    _cifar("plain32", "CIFAR plain-32 (Fig. 6 left)", "resnet_cifar", _cifar_resnet(5, shortcut="none")),
    _cifar("plain44", "CIFAR plain-44 (Fig. 6 left)", "resnet_cifar", _cifar_resnet(7, shortcut="none")),
    _cifar("plain56", "CIFAR plain-56 (Fig. 6 left)", "resnet_cifar", _cifar_resnet(9, shortcut="none")),
    _cifar(
        "plain110",
        "CIFAR plain-110 (Fig. 6 right: fails to converge in the paper)",
        "resnet110_cifar",
        _cifar_resnet(18, shortcut="none"),
    ),
)

# --- He et al. 2016, pre-activation
_PREACT_VARIANTS = (
    *(
        _imagenet(
            f"preact_resnet{depth}",
            f"pre-activation ResNet-{depth} for ImageNet (Table 1 stages, BN-ReLU-conv blocks)",
            {"block": block, "depths": depths, "preact": True},
        )
        for depth, block, depths in (
            (18, "basic", _BASIC_18),
            (34, "basic", _STAGES_34),
            (50, "bottleneck", _STAGES_34),
            (101, "bottleneck", _STAGES_101),
            (152, "bottleneck", _STAGES_152),
        )
    ),
    _cifar(
        "preact_resnet110",
        "pre-activation CIFAR ResNet-110 (basic blocks, option A)",
        "preact_cifar",
        _cifar_resnet(18, preact=True),
    ),
    _cifar(
        "preact_resnet164",
        "pre-activation CIFAR ResNet-164 (bottleneck, 16/32/64 ×4 out)",
        "preact_cifar",
        {**_CIFAR_STEM, "block": "bottleneck", "depths": (18, 18, 18), "preact": True, "shortcut": "B"},
    ),
    _cifar(
        "preact_resnet1001",
        "pre-activation CIFAR ResNet-1001 (bottleneck, 16/32/64 ×4 out)",
        "preact_cifar",
        {**_CIFAR_STEM, "block": "bottleneck", "depths": (111, 111, 111), "preact": True, "shortcut": "B"},
    ),
)

# --- Zagoruyko & Komodakis 2016
_WRN_VARIANTS = (
    _cifar("wrn16_8", "WRN-16-8 (CIFAR, pre-act B(3,3))", "wrn_cifar", _wrn(16, 8)),
    _cifar("wrn28_10", "WRN-28-10 (CIFAR, pre-act B(3,3))", "wrn_cifar", _wrn(28, 10)),
    _cifar("wrn40_4", "WRN-40-4 (CIFAR, pre-act B(3,3))", "wrn_cifar", _wrn(40, 4)),
    _imagenet(
        "wide_resnet50_2",
        "WRN-50-2-bottleneck (ImageNet, bottleneck twice as wide)",
        {"block": "bottleneck", "depths": _STAGES_34, "width_per_group": 128},
        "wide_resnet50_2",
    ),
    _imagenet(
        "wide_resnet101_2",
        "WRN-101-2-bottleneck (ImageNet, torchvision's wide_resnet101_2)",
        {"block": "bottleneck", "depths": _STAGES_101, "width_per_group": 128},
        "wide_resnet101_2",
    ),
)

# --- Xie et al. 2017
_RESNEXT_VARIANTS = (
    _imagenet(
        "resnext50_32x4d",
        "ResNeXt-50 (32×4d), Table 1",
        {"block": "bottleneck", "depths": _STAGES_34, "groups": 32, "width_per_group": 4},
        "resnext50_32x4d",
    ),
    _imagenet(
        "resnext101_32x8d",
        "ResNeXt-101 (32×8d), torchvision's configuration",
        {"block": "bottleneck", "depths": _STAGES_101, "groups": 32, "width_per_group": 8},
        "resnext101_32x8d",
    ),
    _imagenet(
        "resnext101_64x4d",
        "ResNeXt-101 (64×4d), 2× complexity",
        {"block": "bottleneck", "depths": _STAGES_101, "groups": 64, "width_per_group": 4},
        "resnext101_64x4d",
    ),
    _cifar("resnext29_8x64d", "ResNeXt-29 (8×64d), CIFAR (Table 7)", "resnext_cifar", _resnext29(8)),
    _cifar("resnext29_16x64d", "ResNeXt-29 (16×64d), CIFAR (Table 7)", "resnext_cifar", _resnext29(16)),
)

# --- Huang et al. 2016
_SD_VARIANTS = (
    _cifar(
        "resnet110_sd",
        "CIFAR ResNet-110 with stochastic depth, linear decay to p_L = 0.5",
        "stochastic_depth_cifar",
        _cifar_resnet(18, drop_path_rate=0.5),
    ),
)

register_family("resnet", _RESNET, ResNet, _RESNET_VARIANTS)
register_family("preact_resnet", _PREACT, ResNet, _PREACT_VARIANTS)
register_family("wide_resnet", _WRN, ResNet, _WRN_VARIANTS)
register_family("resnext", _RESNEXT, ResNet, _RESNEXT_VARIANTS)
register_family("stochastic_depth", _SD, ResNet, _SD_VARIANTS)
