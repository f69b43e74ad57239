"""ZFNet: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks" (ECCV 2014,
arXiv:1311.2901), the network of Fig. 3 and the wider model (b) of Table 2.

Fig. 3, from a 224×224×3 crop: conv1 96@7×7/2 → 110×110, 3×3/2 max pool → 55×55, contrast
normalisation; conv2 256@5×5/2 → 26×26, pool → 13×13, contrast normalisation; conv3, conv4,
conv5 384/384/256 @3×3/1 → 13×13; pool → 6×6; fc6 4096, fc7 4096, fc8 C-way softmax. Every
convolution is followed by a ReLU; dropout 0.5 on fc6 and fc7 (§3). One tower (one GPU), so
no grouped convolutions.

The paper gives no paddings. We use the only symmetric convolution paddings that reproduce the
Fig. 3 map sizes — conv1 pad 1 (pad 0 gives 109, pad 2 gives 111), conv2 pad 0, conv3–5 pad 1
— and pooling with ceil-mode output sizes, the rule of the frameworks of the time
(cuda-convnet, Caffe): floor-mode pooling would give 54 and 12 instead of Fig. 3's 55 and 13.
"Contrast normalised across feature maps" is the local response normalisation of Krizhevsky
et al. 2012 (§3.3, k=2, n=5, α=1e-4, β=0.75), which the paper builds on; Fig. 3 applies it
after pooling.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import EightLayerNet, LocalResponseNorm, init_weights, normal, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family


# -- blocks ----------------------------------------------------------------------------------
def _contrast_norm() -> LocalResponseNorm:
    return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


# -- main class ------------------------------------------------------------------------------
class ZFNet(EightLayerNet, AtlasModel):
    """The Fig. 3 network; ``widths`` are the conv3, conv4, conv5 filter counts.

    fc6 needs 6×6 pool5 maps, which input sides 207…238 give (224 in the paper); outside that
    range the network cannot run without changing fc6, so both ends are declared.
    """

    min_input_size = 207
    max_input_size = 238

    def __init__(
        self, *, num_classes: int, in_chans: int, widths: Sequence[int] = (384, 384, 256), dropout: float = 0.5
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        c3, c4, c5 = widths
        self.conv1 = nn.Conv2d(in_chans, 96, kernel_size=7, stride=2, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = _pool()
        self.norm1 = _contrast_norm()
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, stride=2, padding=0)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = _pool()
        self.norm2 = _contrast_norm()
        self.conv3 = nn.Conv2d(256, c3, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(c3, c4, kernel_size=3, padding=1)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(c4, c5, kernel_size=3, padding=1)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = _pool()
        self.fc6 = nn.Linear(c5 * 6 * 6, 4096)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        # §3: "All weights are initialized to 10^-2 and biases are set to 0" — read, as in
        # Krizhevsky et al. whom they follow, as weights drawn with standard deviation 0.01.
        init_weights(self, normal(0.01), normal(0.01))

    def forward_features(self, x: Tensor) -> Tensor:
        # Fig. 3: pooling, then contrast normalisation (AlexNet normalises before pooling).
        x = self.norm1(self.pool1(self.relu1(self.conv1(x))))
        x = self.norm2(self.pool2(self.relu2(self.conv2(x))))
        return self.conv3_to_pool5(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc8(self.hidden7(self.hidden6(torch.flatten(x, 1))))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc8 = rebuild_like(
            self.fc8, lambda: init_weights(nn.Linear(self.fc8.in_features, num_classes), normal(0.01), normal(0.01))
        )
        self.num_classes = num_classes

    def after_optimizer_step(self) -> None:
        self.renormalize_filters_()

    @torch.no_grad()
    def renormalize_filters_(self, radius: float = 0.1) -> None:
        """§3: "Each filter in the convolutional layers whose RMS value exceeds a fixed radius
        of 10^-1 is renormalized to this fixed radius" — the trainer calls it after each
        optimiser step (through :meth:`after_optimizer_step`)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                rms = module.weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                module.weight.mul_(torch.clamp(radius / rms, max=1.0))


# -- registered variants ---------------------------------------------------------------------
_PAPER = Paper(
    authors="M. D. Zeiler, R. Fergus",
    title="Visualizing and Understanding Convolutional Networks",
    year=2013,
    venue="ECCV 2014, arXiv:1311.2901",
    url="https://arxiv.org/abs/1311.2901",
)

_VARIANTS = (
    Variant(
        "zfnet",
        "ZFNet as in Fig. 3: 7×7/2 conv1, 5×5/2 conv2, contrast normalisation",
        {"widths": (384, 384, 256)},
    ),
    Variant(
        "zfnet_wide",
        "ZFNet with 512/1024/512 filters in conv3–5 (Table 2, model (b))",
        {"widths": (512, 1024, 512)},
    ),
)
register_family("zfnet", _PAPER, ZFNet, _VARIANTS, recipe="zfnet", **IMAGENET)

__all__ = ["ZFNet"]
