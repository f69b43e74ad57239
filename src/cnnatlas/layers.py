"""Building blocks shared by several model families (each written once, here).

Family-specific blocks live in their family file; a block moves here as soon as a second
family needs it.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, TypeVar

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)
WeightInit = Callable[[Tensor], Any]


def rebuild_like(old: nn.Module, build: Callable[[], ModuleT]) -> ModuleT:
    """``build()`` a replacement for ``old`` on the device and in the floating-point dtype of
    ``old``'s parameters: what every ``reset_classifier`` does, so a model moved with ``.to(…)``
    (or built on the meta device) keeps a new head of the same kind. ``build`` runs with that
    device as the default, so its weight initialisation happens there too.
    """
    reference = next(old.parameters())
    with torch.device(reference.device):
        new = build()
    return new.to(dtype=reference.dtype)


def he_normal(mode: str = "fan_in") -> WeightInit:
    """He et al. 2015's N(0, 2/fan) for layers followed by ReLUs; ``mode`` counts the fan over
    the inputs (as the paper) or the outputs (torchvision's ResNet, VGG)."""
    return partial(nn.init.kaiming_normal_, mode=mode, nonlinearity="relu")


def normal(std: float) -> WeightInit:
    """N(0, std²), the Gaussian of Krizhevsky et al. 2012 §5 (std 0.01) and the papers after it."""
    return partial(nn.init.normal_, mean=0.0, std=std)


def init_weights(
    model: ModuleT, conv: WeightInit, linear: WeightInit | None = None, *, zero_bias: bool = True
) -> ModuleT:
    """Initialise ``model``'s layers in one pass in module order: convolution weights drawn by
    ``conv``, linear weights by ``linear`` (``None`` keeps PyTorch's default), the biases of
    both zero (``zero_bias=False`` keeps PyTorch's default), batch norm γ = 1, β = 0.

    The pass visits ``model.modules()`` in order, the order in which the layers draw their
    random numbers, so a seed gives the same weights every time. Returns ``model``, so a new
    classifier can be built and initialised in one expression.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            draw = conv if isinstance(module, nn.Conv2d) else linear
            if draw is not None:
                draw(module.weight)
            if zero_bias and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def capturing_graph(x: Any) -> bool:
    """True while a graph is being captured rather than run: ``torch.fx.symbolic_trace`` (``x``
    is then a ``torch.fx.Proxy``), ``torch.compile`` or ``torch.export``.

    Blocks whose training pass makes a random decision per mini-batch (stochastic depth,
    FractalNet's drop-path) take it in Python when they run eagerly, skipping the work a
    dropped path would do. A captured graph cannot branch on a value drawn while it runs, so
    there they draw the decision as a 0/1 tensor inside the graph and multiply by it: the
    same function, with the draw happening anew on every call of the graph instead of once,
    frozen, at capture time.
    """
    return isinstance(x, torch.fx.Proxy) or torch.compiler.is_compiling()


class LocalResponseNorm(nn.Module):
    """Local response normalisation in the form of Krizhevsky et al. 2012, §3.3.

    b_c = a_c / (k + α Σ_{c' ∈ window of n} a_{c'}²)^β, with the paper's k=2, n=5, α=1e-4,
    β=0.75. PyTorch's ``nn.LocalResponseNorm`` divides α by n (Caffe's convention), so we pass
    α·n to it: with the same numbers as the paper we compute the paper's function.
    Used by AlexNet 2012, ZFNet, VGG A-LRN and GoogLeNet.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        return F.local_response_norm(x, self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k} (paper form)"


def paper_names_by_prefix(model: nn.Module, prefixes: dict[str, str]) -> dict[str, str]:
    """Expand a few module-path → paper-name pairs to every module below them.

    Torchvision-compatible models keep torchvision's module paths (``features.3``); given
    ``{"features.3": "fire2"}`` this returns ``features.3 → fire2`` and also
    ``features.3.squeeze → fire2.squeeze`` and so on, the longest matching prefix winning,
    which is what :meth:`AtlasModel.paper_layer_names` should return.
    """
    names: dict[str, str] = {}
    for path, _ in model.named_modules():
        parts = path.split(".") if path else []
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if head in prefixes:
                names[path] = ".".join([prefixes[head], *parts[cut:]])
                break
    return names


class EightLayerNet(nn.Module):
    """The layers that Krizhevsky et al. 2012 (Fig. 2) and Zeiler & Fergus 2014 (Fig. 3) share,
    with the papers' module names: conv3 → ReLU → conv4 → ReLU → conv5 → ReLU → pool5, then
    fc6 and fc7, each followed by ReLU and dropout (Krizhevsky §4.2), then fc8.

    A base for AlexNet 2012 (the whole network, or one tower of its model-parallel form) and
    ZFNet, which create these modules and write their own first two convolutional stages (the
    papers order normalisation and pooling differently there).
    """

    conv3: nn.Module
    relu3: nn.Module
    conv4: nn.Module
    relu4: nn.Module
    conv5: nn.Module
    relu5: nn.Module
    pool5: nn.Module
    fc6: nn.Module
    relu6: nn.Module
    drop6: nn.Module
    fc7: nn.Module
    relu7: nn.Module
    drop7: nn.Module

    def conv3_to_pool5(self, x: Tensor) -> Tensor:
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.conv4(x))
        return self.pool5(self.relu5(self.conv5(x)))

    def hidden6(self, x: Tensor) -> Tensor:
        return self.drop6(self.relu6(self.fc6(x)))

    def hidden7(self, x: Tensor) -> Tensor:
        return self.drop7(self.relu7(self.fc7(x)))


ACTIVATIONS = ("relu", "tanh", "sigmoid")


def make_activation(name: str) -> nn.Module:
    """ReLU (Nair & Hinton 2010; AlexNet §3.1), or the saturating tanh and logistic sigmoid
    that AlexNet Fig. 1 and LeNet-5 compare it with."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


class ConvNormAct(nn.Sequential):
    """Convolution (``padding = kernel // 2``: "same" for odd kernels, as VGG §2.1) → batch norm
    (optional; the convolution then has no bias) → activation → local response normalisation
    (optional, after the non-linearity as in AlexNet §3.3)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        batch_norm: bool = False,
        activation: str = "relu",
        lrn: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=not batch_norm
        )
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_chans)
        self.act = make_activation(activation)
        if lrn:
            self.lrn = LocalResponseNorm()
