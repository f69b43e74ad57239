"""The analyser against the papers' and lecture notes' own tables, and against
torch.utils.flop_counter for every registered model. Each expected number names its source.

"Lecture notes" = the CS231n notes, "Convolutional Neural Networks" → "Case studies"
(VGGNet memory/params table; AlexNet walkthrough).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cnnatlas
from cnnatlas.analysis import analyze
from cnnatlas.registry import create_meta_model

ALL_MODELS = cnnatlas.list_models()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_macs_equal_flop_counter_and_params_are_all_in_the_rows(name: str) -> None:
    """For every registered model at its default input, total MACs equal FlopCounterMode
    forward FLOPs ÷ 2 exactly (docs/analysis.md), and every parameter is in a layer row or
    reported as unused. (Parameter totals against published counts: test_torchvision_models_have_
    torchvisions_parameter_counts below and the family test files.)"""
    info = cnnatlas.model_info(name)
    result = analyze(name)
    model = create_meta_model(name).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *info.input_size, device="meta"))
    assert counter.get_total_flops() % 2 == 0
    assert result.totals["macs"] == counter.get_total_flops() // 2
    assert result.totals["params"] == result.totals["unused_params"] + sum(r.params for r in result.layers)
    assert not result.uncounted_ops, f"ops without a FLOP rule: {result.uncounted_ops}"


# Lecture notes, VGGNet table: (layer, output volume H×W×C, weights "not counting biases").
VGG16_NOTES = [
    ("conv1_1", (224, 224, 64), (3 * 3 * 3) * 64),
    ("conv1_2", (224, 224, 64), (3 * 3 * 64) * 64),
    ("pool1", (112, 112, 64), 0),
    ("conv2_1", (112, 112, 128), (3 * 3 * 64) * 128),
    ("conv2_2", (112, 112, 128), (3 * 3 * 128) * 128),
    ("pool2", (56, 56, 128), 0),
    ("conv3_1", (56, 56, 256), (3 * 3 * 128) * 256),
    ("conv3_2", (56, 56, 256), (3 * 3 * 256) * 256),
    ("conv3_3", (56, 56, 256), (3 * 3 * 256) * 256),
    ("pool3", (28, 28, 256), 0),
    ("conv4_1", (28, 28, 512), (3 * 3 * 256) * 512),
    ("conv4_2", (28, 28, 512), (3 * 3 * 512) * 512),
    ("conv4_3", (28, 28, 512), (3 * 3 * 512) * 512),
    ("pool4", (14, 14, 512), 0),
    ("conv5_1", (14, 14, 512), (3 * 3 * 512) * 512),
    ("conv5_2", (14, 14, 512), (3 * 3 * 512) * 512),
    ("conv5_3", (14, 14, 512), (3 * 3 * 512) * 512),
    ("pool5", (7, 7, 512), 0),
    ("fc6", (1, 1, 4096), 7 * 7 * 512 * 4096),
    ("fc7", (1, 1, 4096), 4096 * 4096),
    ("fc8", (1, 1, 1000), 4096 * 1000),
]


@pytest.fixture(scope="module")
def vgg16() -> cnnatlas.analysis.Analysis:
    return analyze("vgg16", input_size=(3, 224, 224))


def test_vgg16_reproduces_the_lecture_note_table(vgg16) -> None:
    for name, (h, w, c), weights in VGG16_NOTES:
        row = vgg16.row(name)
        assert row.activations == h * w * c, name
        assert row.output_shape[1:] in ([c, h, w], [c]), name
        assert row.weight_params == weights, name
    # "TOTAL params: 138M parameters" (lecture notes); exactly 138,357,544 with biases
    # (torchvision 0.29 weights metadata for VGG16_Weights.IMAGENET1K_V1).
    assert vgg16.totals["params"] == 138_357_544


def test_vgg16_memory_total_corrects_the_notes_addition(vgg16) -> None:
    """Lecture notes' VGG16 table: its rows (input included) add up to 15,237,608 elements ≈ 61 MB in
    float32; the notes' own "24M * 4 bytes" total is an addition error (docs/analysis.md)."""
    elements = 3 * 224 * 224 + sum(vgg16.row(name).activations for name, _, _ in VGG16_NOTES)
    assert vgg16.totals["input_activations"] == 150_528
    assert elements == 15_237_608
    assert elements * 4 == 60_950_432
    assert (
        sum(vgg16.row(name).activation_bytes for name, _, _ in VGG16_NOTES) + vgg16.totals["input_bytes"] == 60_950_432
    )


def test_vgg16_receptive_field_at_pool5(vgg16) -> None:
    """Araujo et al. 2019, Distill, Table 1: VGG16 r = 212: pool5 sees 212 px
    with jump 32."""
    assert (vgg16.row("pool5").receptive_field, vgg16.row("pool5").jump) == (212, 32)
    assert (vgg16.row("conv1_1").receptive_field, vgg16.row("conv1_2").receptive_field) == (3, 5)


def test_vgg16_conv1_1_params_and_macs(vgg16) -> None:
    # (3·3·3 + 1)·64 = 1,792 params; 3·3·3·64 MACs at each of 224·224 outputs = 86,704,128 (docs/formulas.md).
    assert (vgg16.row("conv1_1").params, vgg16.row("conv1_1").macs) == (1792, 86_704_128)


def test_alexnet_walkthrough_of_the_notes() -> None:
    """Lecture notes, AlexNet walkthrough: conv1 on 227×227×3 gives 55×55×96 with
    (11·11·3)·96 = 34,848 weights; pool1 gives 27×27×96 with 0 params."""
    result = analyze("alexnet_2012", input_size=(3, 227, 227))
    conv1, pool1 = result.row("conv1"), result.row("pool1")
    assert conv1.output_shape == [1, 96, 55, 55] and conv1.weight_params == 34_848
    assert conv1.spec == "96 11×11 filters, stride 4, pad 0"
    assert pool1.output_shape == [1, 96, 27, 27] and pool1.params == 0
    assert pool1.spec == "3×3 max pool, stride 2"


def test_mobilenet_v1_table_2_breakdown() -> None:
    """Howard et al. 2017, MobileNets, Table 1 and 2 (α = 1, 224): 569 M mult-adds (568.7 M
    exactly) and the share of mult-adds and parameters per layer type. Table 2 counts
    weights only (no BN, no biases). Its "1.19%" of mult-adds for the first, full
    convolution is a digit swap: 112·112·(3·3·3)·32 = 10.84 M is 1.91% of 568.7 M, and only
    1.91 makes the column add up to 100%."""
    result = analyze("mobilenet_v1_100")
    assert result.totals["macs"] == 568_740_352
    kinds = {
        "conv 1×1": lambda r: "1×1 filters" in r.spec,
        "conv dw 3×3": lambda r: "depthwise" in r.spec,
        "conv 3×3": lambda r: "3×3 filters" in r.spec and "depthwise" not in r.spec,
        "FC": lambda r: r.spec.startswith("FC"),
    }
    rows = {kind: [r for r in result.layers if match(r)] for kind, match in kinds.items()}
    weights = sum(r.weight_params for group in rows.values() for r in group)
    macs = {kind: round(100 * sum(r.macs for r in group) / result.totals["macs"], 2) for kind, group in rows.items()}
    params = {kind: round(100 * sum(r.weight_params for r in group) / weights, 2) for kind, group in rows.items()}
    assert macs == {"conv 1×1": 94.86, "conv dw 3×3": 3.06, "conv 3×3": 1.91, "FC": 0.18}
    assert params == {"conv 1×1": 74.59, "conv dw 3×3": 1.06, "conv 3×3": 0.02, "FC": 24.33}


TORCHVISION_MODELS = [n for n in ALL_MODELS if cnnatlas.model_info(n).torchvision_name]


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_models_have_torchvisions_parameter_counts(name: str) -> None:
    """The analyser's and model_info's parameter totals equal torchvision 0.29 weights
    metadata (``meta["num_params"]`` of the model's ImageNet weights)."""
    from torchvision.models import get_model_weights

    info = cnnatlas.model_info(name)
    published = next(iter(get_model_weights(info.torchvision_name))).meta["num_params"]
    assert info.params == published
    assert analyze(name).totals["params"] == published
