"""Network in Network (Lin, Chen & Yan 2014, arXiv:1312.4400): counts, stage shapes, head."""

from __future__ import annotations

import torch
from torch import nn

import cnnatlas
from cnnatlas.registry import create_meta_model


def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


# The paper prints no parameter totals, so the expected counts are summed here layer by layer
# from the authors' released configurations (see src/cnnatlas/models/nin.py for the sources).
NIN_IMAGENET_PARAMS = (
    _conv(11, 3, 96)
    + _conv(1, 96, 96)
    + _conv(1, 96, 96)  # conv1, cccp1, cccp2
    + _conv(5, 96, 256)
    + _conv(1, 256, 256)
    + _conv(1, 256, 256)  # conv2, cccp3, cccp4
    + _conv(3, 256, 384)
    + _conv(1, 384, 384)
    + _conv(1, 384, 384)  # conv3, cccp5, cccp6
    + _conv(3, 384, 1024)
    + _conv(1, 1024, 1024)
    + _conv(1, 1024, 1000)  # conv4, cccp7, cccp8
)
NIN_CIFAR_PARAMS = (
    _conv(5, 3, 192)
    + _conv(1, 192, 160)
    + _conv(1, 160, 96)
    + _conv(5, 96, 192)
    + _conv(1, 192, 192)
    + _conv(1, 192, 192)
    + _conv(3, 192, 192)
    + _conv(1, 192, 192)
    + _conv(1, 192, 10)
)


def _meta(name: str, **kwargs) -> nn.Module:
    return create_meta_model(name, **kwargs).eval()


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every module under the authors' Caffe name (``cccp2``, ``pool1`` …) where it has one."""
    names = model.paper_layer_names()
    return {names.get(path, path): module for path, module in model.named_modules() if path}


def _shapes(model: nn.Module, side: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in _layers(model).items():
        module.register_forward_hook(lambda m, a, out, n=name: shapes.__setitem__(n, tuple(out.shape[1:])))
    model(torch.empty(1, 3, side, side, device="meta"))
    return shapes


def test_parameter_counts() -> None:
    assert NIN_IMAGENET_PARAMS == 7_595_176
    # 966,986 is also what the pytorchcv port (osmr/imgclsmob nin_cifar10) asserts; under 1M,
    # far below the Maxout network the paper compares with in Table 1.
    assert NIN_CIFAR_PARAMS == 966_986
    assert sum(p.numel() for p in _meta("nin").parameters()) == NIN_IMAGENET_PARAMS
    assert sum(p.numel() for p in _meta("nin_cifar").parameters()) == NIN_CIFAR_PARAMS


def test_imagenet_stage_shapes_at_224() -> None:
    # Caffe prototxt at its 224 crop: conv1 11×11/4 → 54; ceil-mode 3×3/2 pools → 27, 13, 6;
    # the class maps are 6×6, which the prototxt's 6×6 average pool reduces to 1×1.
    s = _shapes(_meta("nin"), 224)
    assert s["conv1"] == (96, 54, 54) and s["cccp2"] == (96, 54, 54)
    assert s["pool1"] == (96, 27, 27)
    assert s["pool2"] == (256, 13, 13)
    assert s["pool3"] == (384, 6, 6)
    assert s["cccp7"] == (1024, 6, 6) and s["cccp8"] == (1000, 6, 6)
    assert s["pool4"] == (1000, 1, 1)


def test_cifar_stage_shapes_and_pool_kinds_at_32() -> None:
    # §4.2 / authors' config: 32 → 16 → 8, class maps 10×8×8 averaged globally (8×8 pool).
    model = _meta("nin_cifar")
    s = _shapes(model, 32)
    assert s["cccp2"] == (96, 32, 32) and s["pool1"] == (96, 16, 16)
    assert s["cccp4"] == (192, 16, 16) and s["pool2"] == (192, 8, 8)
    assert s["cccp6"] == (10, 8, 8) and s["pool3"] == (10, 1, 1)
    layers = _layers(model)
    assert isinstance(layers["pool1"], nn.MaxPool2d) and isinstance(layers["pool2"], nn.AvgPool2d)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_no_fully_connected_layers_and_class_maps_are_the_classifier() -> None:
    # §3.2: global average pooling replaces the fully connected layers.
    model = _meta("nin_cifar", num_classes=7)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert _layers(model)["cccp6"].out_channels == 7
    model.reset_classifier(3)
    assert _layers(model)["cccp6"].out_channels == 3 and model.num_classes == 3
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 3)


def test_forward_features_and_head_compose_to_forward() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("nin_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 192, 8, 8)  # conv3 → cccp5 (192 maps), before the class maps
        assert torch.equal(model.forward_head(features), model(x))
