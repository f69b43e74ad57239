"""Count torch.compile graph breaks (torch._dynamo.explain) for one network per family, in
evaluation and training mode; the table in docs/models/README.md comes from this script.

    python scripts/graph_breaks.py [NAME ...]
"""

from __future__ import annotations

import sys

import torch
import torch._dynamo

import cnnatlas
from cnnatlas.base import AtlasModel

# One registered network per family (the family's forward code is shared by its variants).
ONE_PER_FAMILY = [
    "lenet5",
    "lenet5_modern",
    "alexnet",
    "alexnet_2012",
    "zfnet",
    "vgg11_lrn",
    "nin_cifar",
    "googlenet",
    "googlenet_bn",
    "resnet20",
    "preact_resnet164",
    "resnext29_8x64d",
    "resnet110_sd",
    "densenet40_k12",
    "squeezenet1_0_complex_bypass",
    "mobilenet_v1_025",
    "fractalnet20",
]


def input_side(model: AtlasModel) -> int:
    side = max(model.min_input_size, 32)
    return min(side, model.max_input_size) if model.max_input_size else side


def main(names: list[str]) -> None:
    print("| model | mode | graphs | graph breaks | first reason |")
    print("|---|---|---:|---:|---|")
    for name in names:
        for training in (False, True):
            torch.manual_seed(0)
            model = cnnatlas.create_model(name).train(training)
            side = input_side(model)
            torch._dynamo.reset()
            explanation = torch._dynamo.explain(model)(torch.randn(2, model.in_chans, side, side))
            reasons = explanation.break_reasons
            first = str(reasons[0].reason).splitlines()[0] if reasons else ""
            mode = "train" if training else "eval"
            print(f"| {name} | {mode} | {explanation.graph_count} | {explanation.graph_break_count} | {first} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ONE_PER_FAMILY)
