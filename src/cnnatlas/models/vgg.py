"""VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556).

One configuration table (the paper's Table 1) drives every variant: A, A-LRN, B, C, D, E and the
batch-normalised forms that torchvision added later. The layout of the module tree —
``features.N`` (convolutions, ReLUs, pools), ``avgpool`` and ``classifier.N`` — is torchvision's,
so ``vgg11/13/16/19`` (and ``_bn``) load torchvision state dicts unchanged;
:meth:`VGG.paper_layer_names` gives the paper's names (``conv1_1 … conv5_3``, ``pool1 … pool5``,
``fc6 … fc8``) for the analyser.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import LocalResponseNorm, he_normal, init_weights, normal, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family

# -- configuration table (the paper's Table 1) ------------------------------------------------
# An int is a 3×3 convolution with that many filters ("conv3-N"), ``(N, 1)`` a 1×1 convolution
# ("conv1-N", configuration C only), "M" a 2×2/2 max pool, "LRN" local response normalisation
# (configuration A-LRN only). Every convolution has stride 1 and "same" padding (§2.1).
ConfigEntry = Union[int, tuple[int, int], str]

VGG_CONFIGS: dict[str, list[ConfigEntry]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


# -- blocks ------------------------------------------------------------------------------------
def make_features(
    config: list[ConfigEntry], *, in_chans: int, batch_norm: bool
) -> tuple[nn.Sequential, dict[str, str]]:
    """The convolutional stack of one configuration, plus the paper name of every layer in it.

    Layers go straight into one ``nn.Sequential`` (no per-stage containers) because that is
    torchvision's layout, which our state dicts must match.
    """
    layers: list[nn.Module] = []
    names: dict[str, str] = {}
    channels, stage, conv_in_stage = in_chans, 1, 0

    def add(module: nn.Module, paper_name: str) -> None:
        names[f"features.{len(layers)}"] = paper_name
        layers.append(module)

    for entry in config:
        if entry == "M":
            add(nn.MaxPool2d(kernel_size=2, stride=2), f"pool{stage}")
            stage, conv_in_stage = stage + 1, 0
        elif entry == "LRN":
            # §2.3: "the parameters for the LRN layer are those of (Krizhevsky et al., 2012)",
            # i.e. k=2, n=5, α=1e-4, β=0.75 in the paper's (not Caffe's α/n) form.
            add(LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0), f"norm{stage}")
        else:
            width, kernel = (entry, 3) if isinstance(entry, int) else entry
            conv_in_stage += 1
            suffix = f"{stage}_{conv_in_stage}"
            # Bias is kept next to BN as torchvision does (its vgg*_bn checkpoints carry it).
            add(nn.Conv2d(channels, width, kernel_size=kernel, padding=kernel // 2), f"conv{suffix}")
            if batch_norm:
                add(nn.BatchNorm2d(width), f"bn{suffix}")
            add(nn.ReLU(inplace=True), f"relu{suffix}")
            channels = width
    return nn.Sequential(*layers), names


# -- main class --------------------------------------------------------------------------------
class VGG(AtlasModel):
    """VGG network of one Table 1 configuration.

    The classifier is the paper's fc6–fc8 (4096, 4096, classes; dropout 0.5 after fc6 and fc7,
    §3.1). Like torchvision, an ``AdaptiveAvgPool2d((7, 7))`` sits before it: at the paper's
    224×224 input it is the identity (pool5 is already 7×7), and at any other size it stands in
    for the paper's dense (fully convolutional) evaluation, so every input ≥ 32×32 (the five
    2×2 pools must leave a 1×1 map) works.
    """

    min_input_size = 32  # five 2×2/2 max pools: 32 → 1

    def __init__(
        self,
        config: list[ConfigEntry],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.features, self._paper_names = make_features(config, in_chans=in_chans, batch_norm=batch_norm)
        width = next(e if isinstance(e, int) else e[0] for e in reversed(config) if not isinstance(e, str))
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(width * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for paper_name, index in zip(("fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"), range(7)):
            self._paper_names[f"classifier.{index}"] = paper_name
        # torchvision's scheme, so a freshly built model matches torchvision's statistics. (The
        # paper itself initialised deeper nets from net A, or with N(0, 0.01) weights, §3.1.)
        init_weights(self, he_normal("fan_out"), normal(0.01))

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[6]

        def head() -> nn.Linear:
            return init_weights(nn.Linear(old.in_features, num_classes), he_normal("fan_out"), normal(0.01))

        self.classifier[6] = rebuild_like(old, head)
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        return dict(self._paper_names)


# -- builder -----------------------------------------------------------------------------------
def _build(*, num_classes: int, in_chans: int, config: str, batch_norm: bool = False, dropout: float = 0.5) -> VGG:
    """``config`` names a column of Table 1 (:data:`VGG_CONFIGS`); every other option goes to :class:`VGG`."""
    return VGG(VGG_CONFIGS[config], num_classes=num_classes, in_chans=in_chans, batch_norm=batch_norm, dropout=dropout)


# -- registered variants -----------------------------------------------------------------------
PAPER = Paper(
    authors="K. Simonyan, A. Zisserman",
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    year=2014,
    venue="ICLR 2015, arXiv:1409.1556",
    url="https://arxiv.org/abs/1409.1556",
)


def _row(name: str, config: str, description: str, *, batch_norm: bool = False, torchvision: bool = True) -> Variant:
    """A Table 1 configuration; torchvision has a state-dict compatible model of the same name
    unless ``torchvision`` is false."""
    options = {"config": config, "batch_norm": batch_norm}
    return Variant(name, description, options, torchvision_name=name if torchvision else None)


# Published results: cnnatlas.published
VARIANTS = (
    _row("vgg11", "A", "VGG configuration A: 11 weight layers (8 conv + 3 FC)"),
    _row("vgg11_lrn", "A-LRN", "VGG configuration A-LRN: A with LRN after conv1_1 (§2.3)", torchvision=False),
    _row("vgg13", "B", "VGG configuration B: 13 weight layers"),
    _row("vgg16_c", "C", "VGG configuration C: 16 weight layers, 1×1 conv last in stages 3–5", torchvision=False),
    _row("vgg16", "D", "VGG configuration D (VGG-16): 13 conv 3×3 + 3 FC"),
    _row("vgg19", "E", "VGG configuration E (VGG-19): 16 conv 3×3 + 3 FC"),
    # Batch normalisation (Ioffe & Szegedy 2015) postdates the paper: these are torchvision's
    # variants, with no published VGG-paper results.
    _row("vgg11_bn", "A", "VGG-11 (A) with batch norm after every conv (torchvision)", batch_norm=True),
    _row("vgg13_bn", "B", "VGG-13 (B) with batch norm after every conv (torchvision)", batch_norm=True),
    _row("vgg16_bn", "D", "VGG-16 (D) with batch norm after every conv (torchvision)", batch_norm=True),
    _row("vgg19_bn", "E", "VGG-19 (E) with batch norm after every conv (torchvision)", batch_norm=True),
)
register_family("vgg", PAPER, _build, VARIANTS, recipe="vgg", **IMAGENET)
