"""SqueezeNet — Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv:1602.07360 (2016).

The Fire module (§3.2) squeezes with 1×1 convolutions and expands with parallel 1×1 and 3×3
convolutions whose outputs are concatenated. ``squeezenet1_0`` is Table 1 / Fig. 2 (left);
``squeezenet1_1`` is the 2.4× cheaper v1.1 released with the paper's code. Both keep
torchvision's parameter keys (``features.3.squeeze`` …); :meth:`SqueezeNet.paper_layer_names`
maps them to conv1, maxpool1, fire2 … fire9, conv10, pool10.

§6 (Fig. 2 middle/right, Table 3) adds ResNet-style bypasses: a *simple* bypass (identity,
added to the module output) around the Fire modules whose input and output widths match
(fire3, fire5, fire7, fire9) and, for the *complex* variant, a 1×1 convolution bypass around the
others (fire2, fire4, fire6, fire8).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import paper_names_by_prefix, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family

# -- blocks ------------------------------------------------------------------------------------


class Fire(nn.Module):
    """Fire module: squeeze 1×1 (s1x1) → ReLU → [expand 1×1 (e1x1) ‖ expand 3×3 (e3x3)] → ReLU,
    concatenated; plus an optional bypass added to the output (§6).

    ``bypass``: ``"none"``; ``"simple"`` (identity, needs equal input and output widths);
    ``"complex"`` (a 1×1 convolution with bias, like every SqueezeNet convolution).
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int, bypass: str = "none") -> None:
        super().__init__()
        out_channels = expand1x1 + expand3x3
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        if bypass == "simple" and in_channels != out_channels:
            raise ValueError(f"a simple bypass needs equal widths, got {in_channels} → {out_channels}")
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")
        self.bypass_kind = bypass
        self.bypass = nn.Conv2d(in_channels, out_channels, kernel_size=1) if bypass == "complex" else None

    def forward(self, x: Tensor) -> Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = torch.cat([self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))], 1)
        if self.bypass_kind == "simple":
            out = out + x
        elif self.bypass is not None:
            out = out + self.bypass(x)
        return out


# -- main class --------------------------------------------------------------------------------

# Per version: first convolution (out channels, kernel), its smallest working input side, and the
# macroarchitecture after it: "pool" = 3×3/2 max pool, (s1x1, e1x1=e3x3) = a Fire module.
# Fire modules are numbered from 2 (conv1 is layer 1); a pool is named after the layer before it.
_ARCH: dict[str, dict[str, Any]] = {
    "1_0": dict(
        conv1=(96, 7),
        min_side=21,  # torchvision 0.29 weights metadata: min_size (21, 21)
        layout=(
            "pool",
            (16, 64),
            (16, 64),
            (32, 128),
            "pool",
            (32, 128),
            (48, 192),
            (48, 192),
            (64, 256),
            "pool",
            (64, 256),
        ),
    ),
    "1_1": dict(
        conv1=(64, 3),
        min_side=17,  # torchvision 0.29 weights metadata: min_size (17, 17)
        layout=(
            "pool",
            (16, 64),
            (16, 64),
            "pool",
            (32, 128),
            (32, 128),
            "pool",
            (48, 192),
            (48, 192),
            (64, 256),
            (64, 256),
        ),
    ),
}


class SqueezeNet(AtlasModel):
    """SqueezeNet v1.0 / v1.1 with optional §6 bypasses; torchvision's module paths."""

    def __init__(
        self, *, num_classes: int, in_chans: int, version: str, bypass: str = "none", dropout: float = 0.5
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        if version not in _ARCH:
            raise ValueError(f"version must be one of {sorted(_ARCH)}, got {version!r}")
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")
        arch = _ARCH[version]
        conv1_out, conv1_kernel = arch["conv1"]
        self.version = version
        self.min_input_size = arch["min_side"]
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, conv1_out, kernel_size=conv1_kernel, stride=2),
            nn.ReLU(inplace=True),
        ]
        self._paper_names = {"features.0": "conv1", "features.1": "relu_conv1"}
        channels, layer_number = conv1_out, 1
        for item in arch["layout"]:
            index = len(layers)
            if item == "pool":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
                self._paper_names[f"features.{index}"] = f"maxpool{layer_number}"
                continue
            squeeze, expand = item
            layer_number += 1
            # §6: identity bypass where widths match; "complex" adds 1×1-conv bypasses elsewhere.
            if bypass == "none":
                kind = "none"
            elif channels == 2 * expand:
                kind = "simple"
            else:
                kind = "complex" if bypass == "complex" else "none"
            layers.append(Fire(channels, squeeze, expand, expand, bypass=kind))
            self._paper_names[f"features.{index}"] = f"fire{layer_number}"
            channels = 2 * expand
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        self._paper_names.update(
            {"classifier.0": "drop9", "classifier.1": "conv10", "classifier.2": "relu_conv10", "classifier.3": "pool10"}
        )

        # torchvision's initialisation: Kaiming-uniform, the class-score convolution N(0, 0.01).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(x), 1)

    def reset_classifier(self, num_classes: int) -> None:
        def head() -> nn.Conv2d:
            final_conv = nn.Conv2d(self.num_features, num_classes, kernel_size=1)
            nn.init.normal_(final_conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(final_conv.bias, 0)
            return final_conv

        self.classifier[1] = rebuild_like(self.classifier[1], head)
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        """conv1, maxpool1, fire2 (fire2.squeeze, fire2.expand1x1, …), …, conv10, pool10."""
        return paper_names_by_prefix(self, self._paper_names)


# -- registered variants -----------------------------------------------------------------------

_PAPER = Paper(
    authors="F. N. Iandola, S. Han, M. W. Moskewicz, K. Ashraf, W. J. Dally, K. Keutzer",
    title="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    year=2016,
    venue="arXiv:1602.07360",
    url="https://arxiv.org/abs/1602.07360",
)


# Published results: cnnatlas.published
_VARIANTS = (
    Variant(
        "squeezenet1_0", "SqueezeNet v1.0 (Table 1, Fig. 2 left)", {"version": "1_0"}, torchvision_name="squeezenet1_0"
    ),
    Variant(
        "squeezenet1_1",
        "SqueezeNet v1.1 (released with the paper's code: 2.4x fewer mult-adds)",
        {"version": "1_1"},
        torchvision_name="squeezenet1_1",
    ),
    Variant(
        "squeezenet1_0_bypass",
        "SqueezeNet v1.0 with simple bypass around fire3/5/7/9 (Fig. 2 middle)",
        {"version": "1_0", "bypass": "simple"},
    ),
    Variant(
        "squeezenet1_0_complex_bypass",
        "SqueezeNet v1.0 with simple + 1×1-conv bypasses (Fig. 2 right)",
        {"version": "1_0", "bypass": "complex"},
    ),
)
register_family("squeezenet", _PAPER, SqueezeNet, _VARIANTS, recipe="squeezenet", **IMAGENET)
