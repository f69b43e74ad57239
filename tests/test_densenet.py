"""DenseNet (Huang et al. 2017, arXiv:1608.06993): counts, Table 1 shapes, torchvision
equivalence, memory-efficient checkpointing, CIFAR variants of Table 2."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnatlas
from cnnatlas.models.densenet import DenseLayer
from cnnatlas.registry import create_meta_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kwargs) -> nn.Module:
    return create_meta_model(name, **kwargs).eval()


@pytest.mark.parametrize(
    "name, expected",
    [  # torchvision 0.29 weights metadata (num_params)
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
    ],
)
def test_imagenet_parameter_counts(name: str, expected: int) -> None:
    assert _params(_meta(name)) == expected
    assert cnnatlas.model_info(name).params == expected


@pytest.mark.parametrize("name", ["densenet161", "densenet169", "densenet201"])
def test_state_dict_keys_and_shapes_match_torchvision_on_meta(name: str) -> None:
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
    ours = _meta(name)
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs


def test_densenet121_loads_torchvision_weights_and_gives_the_same_logits(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = cnnatlas.load_weights(cnnatlas.create_model("densenet121"), tmp_path / "w.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() <= 1e-5


def _stage_shapes(model: nn.Module, side: int) -> dict[str, tuple[int, ...]]:
    names = model.paper_layer_names()
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, n=names[path]: shapes.__setitem__(n, tuple(out.shape[1:])))
        for path, module in model.named_modules()
        if path in names and "." not in names[path]
    ]
    model(torch.empty(1, model.in_chans, side, side, device="meta"))
    for h in handles:
        h.remove()
    return shapes


def test_table1_output_sizes_of_densenet121_at_224() -> None:
    # Table 1 "Output Size" column; channels follow k=32, θ=0.5 (64 → 256 → 128 → 512 → 256 →
    # 1024 → 512 → 1024 for DenseNet-121's 6/12/24/16 layers).
    shapes = _stage_shapes(_meta("densenet121"), 224)
    assert shapes["conv1"] == (64, 112, 112)
    assert shapes["pool1"] == (64, 56, 56)
    assert shapes["dense_block1"] == (256, 56, 56)
    assert shapes["transition1"] == (128, 28, 28)
    assert shapes["dense_block2"] == (512, 28, 28)
    assert shapes["transition2"] == (256, 14, 14)
    assert shapes["dense_block3"] == (1024, 14, 14)
    assert shapes["transition3"] == (512, 7, 7)
    assert shapes["dense_block4"] == (1024, 7, 7)
    assert shapes["fc"] == (1000,)


def test_densenet264_follows_table1_on_meta() -> None:
    # Table 1, DenseNet-264: k=32, dense blocks of 6/12/64/48 bottleneck layers, θ=0.5:
    # 64+6·32=256→128, 128+12·32=512→256, 256+64·32=2304→1152, 1152+48·32=2688 features.
    model = _meta("densenet264")
    blocks = [len(getattr(model.features, f"denseblock{i}")) for i in range(1, 5)]
    assert blocks == [6, 12, 64, 48]
    assert model.features.norm5.num_features == 2688
    assert model.classifier.in_features == 2688
    assert _stage_shapes(model, 224)["dense_block4"] == (2688, 7, 7)


@pytest.mark.parametrize(
    "name, paper_millions",
    [("densenet40_k12", 1.0), ("densenet_bc100_k12", 0.8)],  # Table 2 "Params" column
)
def test_cifar_parameter_counts_round_to_table2(name: str, paper_millions: float) -> None:
    assert round(_params(_meta(name)) / 1e6, 1) == paper_millions


def test_cifar_densenet40_is_basic_without_compression() -> None:
    # §4.2 / Table 2: L=40 → (40−4)/3 = 12 layers per block, each a single 3×3 conv; first
    # conv has 16 channels; transitions keep the width (16+12·12 = 160, 160+144 = 304).
    model = _meta("densenet40_k12")
    assert model.features.conv0.out_channels == 16
    assert model.features.conv0.kernel_size == (3, 3)
    assert not hasattr(model.features, "pool0")
    layers = [m for m in model.modules() if isinstance(m, DenseLayer)]
    assert len(layers) == 36
    assert all(layer.conv1.kernel_size == (3, 3) and not hasattr(layer, "conv2") for layer in layers)
    assert (model.features.transition1.conv.in_channels, model.features.transition1.conv.out_channels) == (160, 160)
    assert (model.features.transition2.conv.in_channels, model.features.transition2.conv.out_channels) == (304, 304)
    assert _stage_shapes(model, 32)["dense_block3"] == (448, 8, 8)


def test_cifar_densenet_bc100_has_bottlenecks_and_compression() -> None:
    # DenseNet-BC, L=100: (100−4)/6 = 16 bottleneck layers per block, first conv 2k = 24,
    # transitions halve the width (24+16·12 = 216 → 108).
    model = _meta("densenet_bc100_k12")
    assert model.features.conv0.out_channels == 24
    assert [len(getattr(model.features, f"denseblock{i}")) for i in range(1, 4)] == [16, 16, 16]
    assert model.features.denseblock1.denselayer1.conv1.out_channels == 48  # 4k bottleneck
    assert (model.features.transition1.conv.in_channels, model.features.transition1.conv.out_channels) == (216, 108)


def test_memory_efficient_gives_equal_outputs_gradients_and_running_stats() -> None:
    torch.manual_seed(0)
    plain = cnnatlas.create_model("densenet_bc100_k12").train()
    efficient = cnnatlas.create_model("densenet_bc100_k12", memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    # Count relu1 calls: checkpointing must really recompute it in the backward pass (relu1
    # is the last op whose output is saved, so recomputation stops there, before conv1).
    calls = [0]
    for layer in efficient.modules():
        if isinstance(layer, DenseLayer):
            layer.relu1.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    x = torch.randn(4, 3, 32, 32)
    out_plain, out_efficient = plain(x), efficient(x)
    assert torch.allclose(out_plain, out_efficient, atol=1e-6)
    out_plain.square().sum().backward()
    out_efficient.square().sum().backward()
    assert calls[0] == 2 * 48  # 48 dense layers, each relu1 run once more in backward
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name  # running stats updated once


def test_memory_efficient_densenet121_matches_torchvision_weights(tmp_path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None)
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = cnnatlas.load_weights(cnnatlas.create_model("densenet121", memory_efficient=True), tmp_path / "w.pth")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (ours.eval()(x) - reference.eval()(x)).abs().max() <= 1e-5


def test_paper_layer_names_cover_the_table1_stages() -> None:
    names = set(_meta("densenet121").paper_layer_names().values())
    expected = {"conv1", "pool1", "transition3", "fc"} | {f"dense_block{i}" for i in range(1, 5)}
    assert expected <= names
