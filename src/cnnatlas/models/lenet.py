"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998) as published, and the form modern courses teach.

Paper: "Gradient-based learning applied to document recognition", Proc. IEEE 86(11), 1998,
Section II.B (the architecture), Table I (the C3 connection table), Fig. 3 (the RBF bitmaps)
and Appendix A (the squashing function and the initialisation).

``lenet5`` follows the paper layer by layer:

* C1: 6 maps, 5×5 convolution (156 params), then the squashing function.
* S2: trainable subsampling — each unit sums its 2×2 inputs, multiplies the sum by one
  trainable coefficient per map and adds one trainable bias per map (12 params), then squashes.
* C3: 16 maps, 5×5, but each map sees only the S2 maps listed in Table I (1,516 params). Built
  as three grouped convolutions over gathered channels so the arithmetic is exactly the
  paper's 150,000 multiply-adds (a masked dense convolution would multiply zeros).
* S4: like S2 on 16 maps (32 params); C5: 120 maps, 5×5 convolution over the 5×5 S4 maps
  (48,120 params); F6: 84 units (10,164 params). Section II.B: "units in layers up to F6
  compute a dot product ... [which] is then passed through a sigmoid squashing function" —
  so every layer C1…F6 ends with f(a) = 1.7159·tanh(2a/3) (Appendix A).
* Output: 10 Euclidean RBF units, y_i = Σ_j (x_j − w_ij)², with fixed ±1 parameter vectors
  drawn as 7×12 bitmaps of the digits (Fig. 3). The model returns −y_i as logits, so that
  cross-entropy on them is the paper's MAP criterion (eq. 9) without its constant "rubbish
  class" term: CE = y_D + log Σ_i exp(−y_i).

``lenet5_modern`` is the network as courses and the PyTorch tutorial teach it: ReLU, 2×2 max
pooling, a dense C3 (6→16), fully connected C5/F6 and a linear 10-way output (61,706 params).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.layers import rebuild_like
from cnnatlas.registry import Paper, Variant, register_family

# Table I of the paper: which S2 feature maps (rows 0–5) each C3 map (columns 0–15) combines.
# Maps 0–5 take three contiguous S2 maps, 6–11 four contiguous ones, 12–14 four
# non-contiguous ones and map 15 takes all six ("contiguous" wraps around from 5 to 0).
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# 7×12 bitmaps ('#' = +1, '.' = −1) of the digits, in the spirit of the paper's Fig. 3 (the
# stylised ASCII font used as fixed RBF centres). Rows top to bottom, 7 columns each.
DIGIT_BITMAPS: tuple[tuple[str, ...], ...] = (
    (
        "..###..",
        ".#...#.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#...#.",
        "..###..",
        ".......",
    ),
    (
        "...#...",
        "..##...",
        ".#.#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        ".#####.",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "......#",
        "......#",
        ".....#.",
        "....#..",
        "...#...",
        "..#....",
        ".#.....",
        "#......",
        "#######",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "......#",
        "......#",
        "..####.",
        "......#",
        "......#",
        "......#",
        "......#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        ".....#.",
        "....##.",
        "...#.#.",
        "..#..#.",
        ".#...#.",
        "#....#.",
        "#######",
        ".....#.",
        ".....#.",
        ".....#.",
        ".....#.",
        ".......",
    ),
    (
        "#######",
        "#......",
        "#......",
        "#......",
        "######.",
        "......#",
        "......#",
        "......#",
        "......#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        "..####.",
        ".#.....",
        "#......",
        "#......",
        "######.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        "#######",
        "......#",
        ".....#.",
        ".....#.",
        "....#..",
        "....#..",
        "...#...",
        "...#...",
        "..#....",
        "..#....",
        "..#....",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".######",
        "......#",
        "......#",
        "......#",
        ".....#.",
        ".####..",
        ".......",
    ),
)
BITMAP_HEIGHT, BITMAP_WIDTH = 12, 7


def rbf_prototypes(num_classes: int, length: int = BITMAP_HEIGHT * BITMAP_WIDTH) -> Tensor:
    """Fixed ±1 centres of the output RBF units, one row per class (a float32 tensor).

    Classes 0–9 get the digit bitmaps. Further classes (the paper extends the output to the
    full ASCII set with more bitmaps) get rows of a Walsh–Hadamard matrix truncated to
    ``length``: ±1 codes that are far apart, like the paper's "distributed codes". Entry
    ``(r, j)`` of the Walsh matrix is ``(−1)^popcount(r & j)``, computed for all classes at once.
    """
    rows = torch.arange(1, num_classes + 1, dtype=torch.int64)  # row 0 of a Walsh matrix is all ones; skip it
    bits = rows[:, None] & torch.arange(length, dtype=torch.int64)[None, :]
    for shift in (32, 16, 8, 4, 2, 1):  # parity of the set bits by folding
        bits = bits ^ (bits >> shift)
    codes = 1.0 - 2.0 * (bits & 1).to(torch.float32)
    if length == BITMAP_HEIGHT * BITMAP_WIDTH:
        digits = min(num_classes, len(DIGIT_BITMAPS))
        bitmaps = [[1.0 if ch == "#" else -1.0 for row in DIGIT_BITMAPS[c] for ch in row] for c in range(digits)]
        codes[:digits] = torch.tensor(bitmaps, dtype=torch.float32).reshape(digits, length)
    return codes


# -- blocks ----------------------------------------------------------------------------------
class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A·tanh(S·a) with A = 1.7159, S = 2/3 (Appendix A).

    The constants make f(±1) = ±1 and keep the gain near 1 where the targets lie.
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class TrainableSubsampling(nn.Module):
    """S2/S4: the sum of each 2×2 block times one trainable coefficient per map, plus a bias.

    Pooling arithmetic (sum, then one scale per unit), not a convolution, so it costs no MACs
    in the analyser — like a normalisation's per-channel scale.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        summed = F.avg_pool2d(x, k, stride=k) * float(k * k)
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}, kernel_size={self.kernel_size}"


class PartialConv2d(nn.Module):
    """C3: a convolution in which output map j sees only the input maps ``connections[j]``.

    Output maps with the same number of inputs form one grouped convolution over the input
    channels gathered in connection order, so every multiply-add is one the paper performs.
    Outputs come back in the paper's map order 0…15.

    In training mode the same function is computed as one dense convolution whose kernel holds
    the paper's 60 5×5 kernels and zeros for the absent connections: oneDNN's grouped
    convolutions at this size are ~10× slower than a dense one (fwd+bwd 19 ms vs 1.8 ms per
    64-digit batch on 2 CPU cores), and the zeros neither change the output nor receive a
    gradient (the parameters are only the real kernels, scattered into the dense one). Eval mode
    (and therefore the analyser) runs the grouped form, so it reports the paper's 150,000
    multiply-adds per digit rather than the dense 240,000.
    """

    def __init__(self, connections: Sequence[Sequence[int]], kernel_size: int) -> None:
        super().__init__()
        self.connections = tuple(tuple(c) for c in connections)
        by_fan_in: dict[int, list[int]] = {}
        for out_map, inputs in enumerate(self.connections):
            by_fan_in.setdefault(len(inputs), []).append(out_map)
        self.group_maps: list[list[int]] = [by_fan_in[n] for n in sorted(by_fan_in)]
        self.gather_index = [[i for out_map in maps for i in self.connections[out_map]] for maps in self.group_maps]
        self.groups = nn.ModuleList(
            nn.Conv2d(len(index), len(maps), kernel_size, groups=len(maps))
            for maps, index in zip(self.group_maps, self.gather_index)
        )
        # Where each paper map ends up after concatenating the groups' outputs.
        concat_order = [m for maps in self.group_maps for m in maps]
        self.restore_order = [concat_order.index(m) for m in range(len(self.connections))]
        self.identity_order = self.restore_order == list(range(len(self.connections)))
        # Position of each real kernel (in the groups' concatenated order) in the flattened
        # (out_maps × in_maps) dense kernel: output map m, input map i -> m * in_maps + i.
        in_maps = self.in_channels
        dense_slots = [m * in_maps + i for m in concat_order for i in self.connections[m]]
        self.register_buffer("dense_slots", torch.tensor(dense_slots), persistent=False)

    @property
    def in_channels(self) -> int:
        return 1 + max(i for inputs in self.connections for i in inputs)

    @property
    def out_channels(self) -> int:
        return len(self.connections)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return F.conv2d(x, self.dense_weight(), self.dense_bias())
        parts = [conv(x[:, index]) for conv, index in zip(self.groups, self.gather_index)]
        out = torch.cat(parts, dim=1)
        return out if self.identity_order else out[:, self.restore_order]

    def dense_weight(self) -> Tensor:
        """The (16, 6, k, k) kernel with the real kernels in place and zeros elsewhere."""
        # The kernel size comes from the module, not the weight's shape, so that torch.fx can
        # trace this (a traced shape is not a tuple of ints).
        first, k = self.groups[0].weight, self.groups[0].kernel_size
        kernels = torch.cat([conv.weight.reshape(-1, *k) for conv in self.groups])
        dense = first.new_zeros(self.out_channels * self.in_channels, *k)
        dense = dense.index_copy(0, self.dense_slots, kernels)
        return dense.view(self.out_channels, self.in_channels, *k)

    def dense_bias(self) -> Tensor | None:
        if self.groups[0].bias is None:
            return None
        bias = torch.cat([conv.bias for conv in self.groups])
        return bias if self.identity_order else bias[self.restore_order]

    def connection_table(self) -> list[list[bool]]:
        """Rows = input maps, columns = output maps, as in the paper's Table I."""
        return [[i in inputs for inputs in self.connections] for i in range(self.in_channels)]


class EuclideanRBF(nn.Module):
    """Output layer: −‖x − w_i‖² for fixed centres w_i (an ``nn.Parameter`` that never trains).

    The squared distance is expanded as ‖x‖² − 2 x·w_i + ‖w_i‖², so its cost is one
    84×10 matrix product (the paper's 840 connections) and the analyser sees it as MACs.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        centres = rbf_prototypes(num_classes, in_features)
        self.weight = nn.Parameter(centres, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        cross = F.linear(x, self.weight)  # (N, classes): x · w_i
        sq_dist = x.pow(2).sum(dim=1, keepdim=True) - 2.0 * cross + self.weight.pow(2).sum(dim=1)
        return -sq_dist

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, fixed ±1 centres"


# -- main class ------------------------------------------------------------------------------
class LeNet5(AtlasModel):
    """LeNet-5; ``paper=True`` is the 1998 network, ``paper=False`` the modern course form.

    C5 must see exactly 5×5 maps (in the paper it is a 5×5 convolution producing 1×1, followed
    by fully connected layers), so the input side is pinned to 32: smaller inputs collapse C5,
    and we refuse larger ones rather than silently dropping border rows in the subsampling.
    """

    min_input_size = 32
    max_input_size = 32

    def __init__(self, *, num_classes: int, in_chans: int, paper: bool) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.paper = paper

        def act() -> nn.Module:
            return ScaledTanh() if paper else nn.ReLU(inplace=True)

        def pool(channels: int) -> nn.Module:
            return TrainableSubsampling(channels) if paper else nn.MaxPool2d(2, 2)

        self.c1 = nn.Conv2d(in_chans, 6, 5)
        self.act1 = act()
        self.s2 = pool(6)
        self.act2 = act() if paper else nn.Identity()  # the paper squashes after S2 too
        self.c3 = PartialConv2d(C3_CONNECTIONS, 5) if paper else nn.Conv2d(6, 16, 5)
        self.act3 = act()
        self.s4 = pool(16)
        self.act4 = act() if paper else nn.Identity()
        # Paper: C5 is a 5×5 convolution; the course form flattens and uses a Linear layer
        # (identical arithmetic on a 5×5 map).
        self.c5 = nn.Conv2d(16, 120, 5) if paper else nn.Linear(16 * 5 * 5, 120)
        self.act5 = act()
        self.f6 = nn.Linear(120, 84)
        self.act6 = act()
        self.output = self._make_head(num_classes)
        if paper:
            self._init_paper()

    def _make_head(self, num_classes: int) -> nn.Module:
        return EuclideanRBF(84, num_classes) if self.paper else nn.Linear(84, num_classes)

    def _init_paper(self) -> None:
        # Appendix A: weights uniform in ±2.4/F_i, F_i the unit's fan-in. We treat biases as
        # weights on a constant input (the paper's formalism) and draw them the same way.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
            elif isinstance(module, nn.Linear):
                fan_in = module.in_features
            elif isinstance(module, TrainableSubsampling):
                fan_in = module.kernel_size**2
            else:
                continue
            bound = 2.4 / fan_in
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.uniform_(module.bias, -bound, bound)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act2(self.s2(self.act1(self.c1(x))))
        x = self.act4(self.s4(self.act3(self.c3(x))))
        if not self.paper:
            x = torch.flatten(x, 1)
        x = self.act5(self.c5(x))
        return torch.flatten(x, 1)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.output(self.act6(self.f6(x)))

    def reset_classifier(self, num_classes: int) -> None:
        self.output = rebuild_like(self.output, lambda: self._make_head(num_classes))
        self.num_classes = num_classes

    def paper_layer_names(self) -> dict[str, str]:
        return {"c1": "C1", "s2": "S2", "c3": "C3", "s4": "S4", "c5": "C5", "f6": "F6", "output": "OUTPUT"}


# -- registered variants ---------------------------------------------------------------------
_PAPER = Paper(
    authors="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner",
    title="Gradient-based learning applied to document recognition",
    year=1998,
    venue="Proceedings of the IEEE 86(11):2278–2324",
    url="http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf",
)

_VARIANTS = (
    # Section III.C: 0.95% test error on MNIST without distortions, 0.8% when the training set is
    # augmented with artificially distorted images.
    Variant(
        "lenet5",
        "LeNet-5 as published: scaled tanh, trainable subsampling, Table I C3, fixed RBF output",
        {"paper": True},
    ),
    Variant(
        "lenet5_modern",
        "LeNet-5 as courses teach it: ReLU, max-pool, dense C3, linear 10-way head",
        {"paper": False},
    ),
)
register_family(
    "lenet", _PAPER, LeNet5, _VARIANTS, input_size=(1, 32, 32), dataset="MNIST", num_classes=10, recipe="lenet5"
)

__all__ = ["LeNet5", "C3_CONNECTIONS", "DIGIT_BITMAPS", "rbf_prototypes"]
