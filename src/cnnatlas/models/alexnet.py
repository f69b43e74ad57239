"""AlexNet: torchvision's one-tower network and the two-tower 2012 network as published.

* ``alexnet`` — the one-tower network of torchvision (after Krizhevsky 2014, "One weird trick
  for parallelizing convolutional neural networks"), state-dict compatible with torchvision's
  ``alexnet``: 64/192/384/256/256 filters, an adaptive 6×6 average pool, 61,100,840 params.
* ``alexnet_2012`` — Krizhevsky, Sutskever & Hinton, NIPS 2012, Fig. 2 and §3: 227×227 input,
  conv1 96@11×11/4, ReLU → local response normalisation (§3.3, k=2, n=5, α=1e-4, β=0.75) →
  overlapping 3×3/2 max pooling (§3.4) after conv1 and conv2, conv2/conv4/conv5 seeing only
  their own tower's half of the maps, conv3 and fc6/fc7/fc8 connected across towers, dropout
  0.5 on the outputs of fc6 and fc7 (§4.2), 60,965,224 params.

The 2012 network exists in two forms with one state dict:

* single device (default): the towers are channel halves; a per-tower layer is a grouped
  convolution (``groups=2``) and the normalisation runs within each half, as each GPU could
  only see its own maps.
* model parallel (``create_model("alexnet_2012", devices=("cuda:0", "cuda:1"))``): two tower
  modules on two devices; activations cross devices only into conv3, fc6, fc7 and fc8, where
  the paper's GPUs communicate. State-dict hooks present each layer as the concatenation of
  the two towers' parameters (output rows of tower 0, then tower 1), which is exactly the
  single-device layout, so checkpoints load into either form. See docs/model_parallel.md.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.errors import InputError
from cnnatlas.layers import EightLayerNet, LocalResponseNorm, rebuild_like
from cnnatlas.registry import IMAGENET, Paper, Variant, register_family

TOWERS = 2


# -- blocks ----------------------------------------------------------------------------------
class TowerLocalResponseNorm(nn.Module):
    """Paper-form LRN applied within each tower's channel block separately.

    In 2012 each GPU held half of the maps and normalised over its own neighbours only
    (§3.3's sum runs over "adjacent kernel maps" that live on the same GPU), so at the tower
    boundary the window is cut off, exactly as it is in the model-parallel form.
    """

    def __init__(self, towers: int = TOWERS) -> None:
        super().__init__()
        self.towers = towers
        self.norm = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.towers == 1:
            return self.norm(x)
        # Indexing the chunks (rather than iterating) keeps this traceable by torch.fx.
        parts = x.chunk(self.towers, dim=1)
        return torch.cat([self.norm(parts[tower]) for tower in range(self.towers)], dim=1)

    def extra_repr(self) -> str:
        return f"towers={self.towers}"


def _tower_split(total: int) -> tuple[int, int]:
    """Rows of a layer held by tower 0 and tower 1 (half each; tower 0 takes an odd one)."""
    return total - total // 2, total // 2


def _layers_2012(in_chans: int, num_classes: int) -> "OrderedDict[str, dict[str, Any]]":
    """The paper's Fig. 2 as data: per learnt layer, the full-network shape and whether each
    tower sees the other tower's maps (``cross``) or only its own (``grouped``) or the image.

    ``bias`` is §5's initial bias: 1 in conv2, conv4, conv5 and the hidden fc layers, else 0.
    """
    return OrderedDict(
        conv1=dict(kind="conv", in_=in_chans, out=96, k=11, stride=4, pad=0, wiring="image", bias=0.0),
        conv2=dict(kind="conv", in_=96, out=256, k=5, stride=1, pad=2, wiring="grouped", bias=1.0),
        conv3=dict(kind="conv", in_=256, out=384, k=3, stride=1, pad=1, wiring="cross", bias=0.0),
        conv4=dict(kind="conv", in_=384, out=384, k=3, stride=1, pad=1, wiring="grouped", bias=1.0),
        conv5=dict(kind="conv", in_=384, out=256, k=3, stride=1, pad=1, wiring="grouped", bias=1.0),
        fc6=dict(kind="fc", in_=256 * 6 * 6, out=4096, wiring="cross", bias=1.0),
        fc7=dict(kind="fc", in_=4096, out=4096, wiring="cross", bias=1.0),
        fc8=dict(kind="fc", in_=4096, out=num_classes, wiring="cross", bias=0.0),
    )


def _init_2012(layer: nn.Module, bias: float) -> None:
    # §5: weights from N(0, 0.01²); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.
    nn.init.normal_(layer.weight, mean=0.0, std=0.01)
    nn.init.constant_(layer.bias, bias)


def _make_layer(spec: dict[str, Any], tower: int | None) -> nn.Module:
    """One learnt layer: the whole layer (``tower=None``) or the part one tower holds."""
    out = spec["out"] if tower is None else _tower_split(spec["out"])[tower]
    if spec["kind"] == "fc":
        layer: nn.Module = nn.Linear(spec["in_"], out)
    else:
        grouped = spec["wiring"] == "grouped"
        if tower is None:
            in_, groups = spec["in_"], TOWERS if grouped else 1
        else:
            in_, groups = spec["in_"] // TOWERS if grouped else spec["in_"], 1
        layer = nn.Conv2d(in_, out, spec["k"], stride=spec["stride"], padding=spec["pad"], groups=groups)
    _init_2012(layer, spec["bias"])
    return layer


# -- main classes ----------------------------------------------------------------------------
class AlexNet(AtlasModel):
    """torchvision's one-tower AlexNet (same modules, keys and default initialisation)."""

    # Smallest side that survives conv1 (11/4, pad 2) and the three 3×3/2 pools; torchvision
    # 0.29's weights metadata says the same ("min_size": (63, 63)).
    min_input_size = 63

    def __init__(self, *, num_classes: int, in_chans: int, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[6]
        self.classifier[6] = rebuild_like(old, lambda: nn.Linear(old.in_features, num_classes))
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        features = [
            "conv1",
            "relu1",
            "pool1",
            "conv2",
            "relu2",
            "pool2",
            "conv3",
            "relu3",
            "conv4",
            "relu4",
            "conv5",
            "relu5",
            "pool5",
        ]
        # torchvision drops out the *inputs* of fc6 and fc7; named after the layer they feed.
        classifier = ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
        names = {f"features.{i}": n for i, n in enumerate(features)}
        names.update({f"classifier.{i}": n for i, n in enumerate(classifier)})
        names["avgpool"] = "avgpool"
        return names


class Fig2Layers(EightLayerNet):
    """Fig. 2's layers under the paper's names, either for the whole network (``tower`` None:
    a per-tower layer is a grouped convolution and LRN runs within each half) or for the rows
    that one tower holds (the model-parallel form, ``tower`` 0 or 1). The base of
    :class:`AlexNet2012` and :class:`AlexNetTower`, so the layer list is written once."""

    tower: int | None = None

    def _add_layers(self, *, in_chans: int, num_classes: int, dropout: float) -> None:
        specs, tower = _layers_2012(in_chans, num_classes), self.tower

        def norm() -> nn.Module:
            return TowerLocalResponseNorm() if tower is None else LocalResponseNorm()  # defaults: §3.3's

        self.conv1 = _make_layer(specs["conv1"], tower)
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = norm()
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv2 = _make_layer(specs["conv2"], tower)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = norm()
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.conv3 = _make_layer(specs["conv3"], tower)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = _make_layer(specs["conv4"], tower)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = _make_layer(specs["conv5"], tower)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.fc6 = _make_layer(specs["fc6"], tower)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = _make_layer(specs["fc7"], tower)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = self.make_fc8(num_classes)

    def make_fc8(self, num_classes: int) -> nn.Module | None:
        """fc8 (or this tower's rows of it; None when the tower holds no class, as in one-class heads)."""
        if self.tower is not None and not _tower_split(num_classes)[self.tower]:
            return None
        return _make_layer(_layers_2012(1, num_classes)["fc8"], self.tower)

    def conv1_to_pool2(self, x: Tensor) -> Tensor:
        """conv1 … pool2: ReLU, then response normalisation (§3.3), then overlapping pooling (§3.4);
        in the model-parallel form the tower works alone on its own maps."""
        x = self.pool1(self.norm1(self.relu1(self.conv1(x))))
        return self.pool2(self.norm2(self.relu2(self.conv2(x))))


class AlexNet2012(Fig2Layers, AtlasModel):
    """The 2012 two-tower network on one device (towers = channel halves, grouped convs).

    fc6 needs 6×6 pool5 maps: input sides 227…258 give them (224 gives 5×5 — the paper's
    "224×224" is a known misprint of 227, since (224 − 11)/4 + 1 is not an integer).
    """

    min_input_size = 227
    max_input_size = 258

    def __init__(self, *, num_classes: int, in_chans: int, dropout: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self._add_layers(in_chans=in_chans, num_classes=num_classes, dropout=dropout)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.conv3_to_pool5(self.conv1_to_pool2(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc8(self.hidden7(self.hidden6(torch.flatten(x, 1))))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc8 = rebuild_like(self.fc8, lambda: self.make_fc8(num_classes))
        self.num_classes = num_classes


class AlexNetTower(Fig2Layers):
    """One GPU's half of the 2012 network: its own maps of every layer. Its conv3 and fc6–fc8
    read both towers' activations, which :class:`AlexNet2012ModelParallel` hands it."""

    def __init__(self, *, tower: int, in_chans: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.tower = tower
        self._add_layers(in_chans=in_chans, num_classes=num_classes, dropout=dropout)

    @property
    def device(self) -> torch.device:
        # Read at call time so meta stand-ins (find_collapsing_layer) are followed too.
        return self.conv1.weight.device


class AlexNet2012ModelParallel(AtlasModel):
    """The 2012 network split over two devices as on the paper's two GTX 580 GPUs.

    Tower 0 lives on ``devices[0]``, tower 1 on ``devices[1]``; activations are exchanged only
    into conv3, fc6, fc7 and fc8 (Fig. 2), and the logits are gathered on ``devices[0]``.
    """

    min_input_size = AlexNet2012.min_input_size
    max_input_size = AlexNet2012.max_input_size

    def __init__(
        self, *, num_classes: int, in_chans: int, devices: Sequence[str | torch.device], dropout: float = 0.5
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.devices = tuple(torch.device(d) for d in devices)
        towers = []
        for index, device in enumerate(self.devices):
            # Placement is what the caller asked for by passing devices, so build in place.
            with torch.device(device):
                towers.append(AlexNetTower(tower=index, in_chans=in_chans, num_classes=num_classes, dropout=dropout))
        self.tower0, self.tower1 = towers
        self.register_state_dict_post_hook(_merge_tower_state)
        self.register_load_state_dict_pre_hook(_split_tower_state)

    def _exchange(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Each tower gets both towers' activations (its own first in tower order 0, 1)."""
        d0, d1 = self.tower0.device, self.tower1.device
        return torch.cat([a, b.to(d0)], dim=1), torch.cat([a.to(d1), b], dim=1)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.tower0.conv1_to_pool2(x.to(self.tower0.device))
        b = self.tower1.conv1_to_pool2(x.to(self.tower1.device))
        a, b = self._exchange(a, b)  # communication 1: into conv3, which sees both towers' maps
        return self.tower0.conv3_to_pool5(a), self.tower1.conv3_to_pool5(b)

    def forward_head(self, x: tuple[Tensor, Tensor]) -> Tensor:
        t0, t1 = self.tower0, self.tower1
        a, b = self._exchange(torch.flatten(x[0], 1), torch.flatten(x[1], 1))  # into fc6
        a, b = t0.hidden6(a), t1.hidden6(b)
        a, b = self._exchange(a, b)  # into fc7
        a, b = t0.hidden7(a), t1.hidden7(b)
        a, b = self._exchange(a, b)  # into fc8
        logits = [t0.fc8(a)] + ([t1.fc8(b).to(t0.device)] if t1.fc8 is not None else [])
        return torch.cat(logits, dim=1)

    def reset_classifier(self, num_classes: int) -> None:
        for tower in (self.tower0, self.tower1):
            if _tower_split(num_classes)[tower.tower] == 0:
                tower.fc8 = None  # a one-class head lives on tower 0 alone
            else:
                tower.fc8 = rebuild_like(tower.conv1, lambda tower=tower: tower.make_fc8(num_classes))
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        return {
            f"tower{t}.{name}": f"{name} (GPU {t + 1})"
            for t in range(TOWERS)
            for name, _ in getattr(self, f"tower{t}").named_children()
        }


_LEARNT_2012 = tuple(_layers_2012(3, 1000))


def _merge_tower_state(module: nn.Module, state: dict[str, Tensor], prefix: str, _meta: Any) -> None:
    # state_dict(): "tower0.conv2.weight" + "tower1.conv2.weight" → "conv2.weight" (rows of
    # tower 0 then tower 1), the single-device form's layout.
    for layer in _LEARNT_2012:
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{prefix}tower{t}.{layer}.{kind}", None) for t in range(TOWERS)]
            present = [p for p in parts if p is not None]
            if present:
                target = present[0].device
                state[f"{prefix}{layer}.{kind}"] = torch.cat([p.to(target) for p in present], dim=0)


def _rows_held(tower: nn.Module, layer: str) -> int:
    held = getattr(tower, layer)
    return 0 if held is None else held.weight.shape[0]


def _split_tower_state(
    module: nn.Module,
    state: dict[str, Tensor],
    prefix: str,
    _meta: Any,
    _strict: bool,
    _missing: list[str],
    _unexpected: list[str],
    error_msgs: list[str],
) -> None:
    # load_state_dict(): the inverse of _merge_tower_state, before the towers load their keys.
    for layer in _LEARNT_2012:
        for kind in ("weight", "bias"):
            key = f"{prefix}{layer}.{kind}"
            if key not in state:
                continue
            rows = [_rows_held(getattr(module, f"tower{t}"), layer) for t in range(TOWERS)]
            full = state.pop(key)
            if full.shape[0] != sum(rows):
                error_msgs.append(f"size mismatch for {key}: {full.shape[0]} rows, the towers hold {sum(rows)}")
                continue
            for t, part in enumerate(torch.split(full, rows, dim=0)):
                if rows[t]:
                    state[f"{prefix}tower{t}.{layer}.{kind}"] = part


# -- builder ---------------------------------------------------------------------------------
def _build(
    *,
    num_classes: int,
    in_chans: int,
    layout: str,
    devices: Sequence[str | torch.device] | None = None,
    dropout: float = 0.5,
) -> AtlasModel:
    """One of the three forms; ``dropout`` (§4.2: 0.5 on fc6 and fc7) reaches every one."""
    if layout == "one_tower":
        if devices is not None:
            raise InputError("alexnet has one tower; the model-parallel form is alexnet_2012 (devices=(a, b))")
        return AlexNet(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
    if devices is None:
        return AlexNet2012(num_classes=num_classes, in_chans=in_chans, dropout=dropout)
    try:
        parsed = [torch.device(d) for d in devices]
    except (TypeError, RuntimeError) as exc:
        raise InputError(f"alexnet_2012: devices must be two torch devices, got {devices!r} ({exc})") from None
    if len(parsed) != TOWERS:
        raise InputError(f"alexnet_2012: devices must name exactly two devices (one per tower), got {devices!r}")
    return AlexNet2012ModelParallel(num_classes=num_classes, in_chans=in_chans, devices=parsed, dropout=dropout)


# -- registered variants ---------------------------------------------------------------------
_PAPER_2012 = Paper(
    authors="A. Krizhevsky, I. Sutskever, G. E. Hinton",
    title="ImageNet Classification with Deep Convolutional Neural Networks",
    year=2012,
    venue="NeurIPS (NIPS) 2012",
    url="https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks",
)
_PAPER_2014 = Paper(
    authors="A. Krizhevsky",
    title="One weird trick for parallelizing convolutional neural networks",
    year=2014,
    venue="arXiv:1404.5997",
    url="https://arxiv.org/abs/1404.5997",
)

_VARIANTS = (
    # The one-tower paper reports results of a related but different configuration (conv4 with
    # 384 maps), so none are attached to torchvision's network (see cnnatlas.published).
    Variant(
        "alexnet",
        "One-tower AlexNet, state-dict compatible with torchvision's alexnet",
        {"layout": "one_tower"},
        torchvision_name="alexnet",
        paper=_PAPER_2014,
    ),
    Variant(
        "alexnet_2012",
        "AlexNet as published: two towers, LRN, overlapping pooling (model-parallel form via devices=)",
        {"layout": "two_towers"},
        input_size=(3, 227, 227),  # the paper's "224" is a misprint (see AlexNet2012)
    ),
)
register_family("alexnet", _PAPER_2012, _build, _VARIANTS, recipe="alexnet2012", **IMAGENET)

__all__ = ["AlexNet", "AlexNet2012", "AlexNet2012ModelParallel", "AlexNetTower", "TowerLocalResponseNorm"]
