"""VGG (Simonyan & Zisserman 2014, arXiv:1409.1556): counts, Table 1 structure, torchvision
equivalence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import cnnatlas
from cnnatlas.layers import LocalResponseNorm
from cnnatlas.registry import create_meta_model

# Exact parameter counts with 1,000 classes.
EXPECTED_PARAMS = {
    "vgg11": 132_863_336,  # torchvision 0.29 weights metadata (VGG11_Weights)
    "vgg11_lrn": 132_863_336,  # LRN has no weights: Table 2 lists A and A-LRN both at 133M
    "vgg13": 133_047_848,  # torchvision 0.29 weights metadata
    "vgg16_c": 133_638_952,  # summed from Table 1 config C (1×1 convs in stages 3–5); Table 2: 134M
    "vgg16": 138_357_544,  # torchvision 0.29 weights metadata; Table 2: 138M
    "vgg19": 143_667_240,  # torchvision 0.29 weights metadata; Table 2: 144M
    "vgg11_bn": 132_868_840,  # torchvision 0.29 weights metadata
    "vgg13_bn": 133_053_736,  # torchvision 0.29 weights metadata
    "vgg16_bn": 138_365_992,  # torchvision 0.29 weights metadata
    "vgg19_bn": 143_678_248,  # torchvision 0.29 weights metadata
}
# Table 2 of the paper: number of parameters in millions per configuration.
TABLE2_MILLIONS = {"vgg11": 133, "vgg11_lrn": 133, "vgg13": 133, "vgg16_c": 134, "vgg16": 138, "vgg19": 144}
# Table 1: weight layers per configuration (A 11, B 13, C 16, D 16, E 19).
TABLE1_WEIGHT_LAYERS = {"vgg11": 11, "vgg11_lrn": 11, "vgg13": 13, "vgg16_c": 16, "vgg16": 16, "vgg19": 19}
TORCHVISION_COMPATIBLE = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def _meta(name: str, **kwargs) -> nn.Module:
    return create_meta_model(name, **kwargs).eval()


def test_all_variants_are_registered() -> None:
    assert set(cnnatlas.list_models("vgg*")) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count(name: str) -> None:
    model = _meta(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == EXPECTED_PARAMS[name]
    if name in TABLE2_MILLIONS:
        assert round(count / 1e6) == TABLE2_MILLIONS[name]


@pytest.mark.parametrize("name", sorted(TABLE1_WEIGHT_LAYERS))
def test_weight_layer_count_matches_table1(name: str) -> None:
    model = _meta(name)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == TABLE1_WEIGHT_LAYERS[name]


def test_configuration_c_has_1x1_convs_last_in_stages_3_to_5() -> None:
    # Table 1, column C: "conv1-256" after two conv3-256, "conv1-512" after two conv3-512 (×2).
    model = _meta("vgg16_c")
    names = model.paper_layer_names()
    one_by_one = [
        names[f"features.{i}"]
        for i, m in enumerate(model.features)
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    ]
    assert one_by_one == ["conv3_3", "conv4_3", "conv5_3"]


def test_a_lrn_normalises_after_the_first_conv_with_krizhevsky_parameters() -> None:
    # Table 1 column A-LRN: conv3-64, LRN, maxpool; §2.3: parameters of Krizhevsky et al. 2012.
    model = _meta("vgg11_lrn")
    kinds = [type(m) for m in model.features[:4]]
    assert kinds == [nn.Conv2d, nn.ReLU, LocalResponseNorm, nn.MaxPool2d]
    lrn = model.features[2]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)


def test_stage_outputs_at_224_follow_table1() -> None:
    # §2.1: 224×224 input, five 2×2/2 max pools, 3×3 convs with padding 1 → 7×7×512 at pool5.
    model = _meta("vgg16")
    names = model.paper_layer_names()
    shapes: dict[str, tuple[int, ...]] = {}
    for path, module in model.named_modules():
        if path in names:
            module.register_forward_hook(lambda m, a, out, n=names[path]: shapes.__setitem__(n, tuple(out.shape)))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert shapes["conv1_2"] == (1, 64, 224, 224)
    assert shapes["pool1"] == (1, 64, 112, 112)
    assert shapes["pool3"] == (1, 256, 28, 28)
    assert shapes["conv5_3"] == (1, 512, 14, 14)
    assert shapes["pool5"] == (1, 512, 7, 7)
    assert shapes["fc6"] == (1, 4096) and shapes["fc8"] == (1, 1000)


def test_vgg16_receptive_field_at_pool5() -> None:
    # Lecture-note fact the analyser also checks: VGG16's pool5 sees 212×212 pixels, jump 32.
    model = _meta("vgg16")
    names = model.paper_layer_names()
    r, j = 1, 1
    for index, layer in enumerate(model.features):
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            r, j = r + (k - 1) * j, j * s
        if names[f"features.{index}"] == "pool5":
            break
    assert (r, j) == (212, 32)


@pytest.mark.parametrize("name", TORCHVISION_COMPATIBLE)
def test_state_dict_keys_and_shapes_match_torchvision(name: str) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
    ours = _meta(name)
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs


def _check_torchvision_logits(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    ours = cnnatlas.load_weights(cnnatlas.create_model(name), path).eval()
    x = torch.randn(2, 3, 32, 32)  # the adaptive 7×7 pool makes 32×32 (1×1 at pool5) valid
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-5


# Each file holds >0.5 GB of weights (fc6 alone is 102.8M parameters), so the default run checks
# one plain and one BN network numerically; every variant's keys/shapes are checked above and
# the remaining numerical comparisons run with -m slow.
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_logits_match_torchvision(name: str, tmp_path: Path) -> None:
    _check_torchvision_logits(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TORCHVISION_COMPATIBLE if n not in ("vgg11", "vgg11_bn")])
def test_logits_match_torchvision_all_depths(name: str, tmp_path: Path) -> None:
    _check_torchvision_logits(name, tmp_path)


def test_dense_head_runs_at_other_sizes_and_published_results_are_cited() -> None:
    model = _meta("vgg11", num_classes=5, in_chans=1)
    assert model(torch.empty(1, 1, 48, 64, device="meta")).shape == (1, 5)
    info = cnnatlas.model_info("vgg16")
    assert info.torchvision_name == "vgg16" and info.default_recipe == "vgg"
    # Table 3, D trained at S∈[256;512], tested at Q=384: 25.6 top-1 / 8.1 top-5 val error.
    assert {(r.metric, r.error) for r in info.results if r.source == "Table 3" and "Q=384" in r.setting} == {
        ("top-1", 25.6),
        ("top-5", 8.1),
    }
