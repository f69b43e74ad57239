"""SqueezeNet (Iandola et al. 2016, arXiv:1602.07360): counts, Table 1 shapes, torchvision
equivalence, the §6 bypass variants of Table 3."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnatlas
from cnnatlas.models.squeezenet import Fire
from cnnatlas.registry import create_meta_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str) -> nn.Module:
    return create_meta_model(name).eval()


@pytest.mark.parametrize(
    "name, expected",
    [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496)],  # torchvision 0.29 weights metadata
)
def test_parameter_counts(name: str, expected: int) -> None:
    assert _params(_meta(name)) == expected


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_loads_torchvision_weights_and_gives_the_same_logits(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = cnnatlas.load_weights(cnnatlas.create_model(name), tmp_path / "w.pth").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() <= 1e-5


def test_table1_output_sizes_of_squeezenet1_0() -> None:
    # Table 1, "output size" column. Its sizes (conv1 111×111) are those of a 227×227 input —
    # the crop of the authors' Caffe model — although the table's first row says 224×224
    # (a 7×7/2 unpadded conv maps 224 to 109).
    model = _meta("squeezenet1_0")
    names = model.paper_layer_names()
    shapes: dict[str, tuple[int, ...]] = {}
    for path, module in model.named_modules():
        if path in names and "." not in names[path]:
            module.register_forward_hook(lambda _m, _i, out, n=names[path]: shapes.__setitem__(n, tuple(out.shape[1:])))
    model(torch.empty(1, 3, 227, 227, device="meta"))
    assert shapes["conv1"] == (96, 111, 111)
    assert shapes["maxpool1"] == (96, 55, 55)
    assert shapes["fire2"] == shapes["fire3"] == (128, 55, 55)
    assert shapes["fire4"] == (256, 55, 55)
    assert shapes["maxpool4"] == (256, 27, 27)
    assert shapes["fire5"] == (256, 27, 27)
    assert shapes["fire6"] == shapes["fire7"] == (384, 27, 27)
    assert shapes["fire8"] == (512, 27, 27)
    assert shapes["maxpool8"] == (512, 13, 13)
    assert shapes["fire9"] == (512, 13, 13)
    assert shapes["conv10"] == (1000, 13, 13)
    assert shapes["pool10"] == (1000, 1, 1)


def _bypass_kinds(name: str) -> dict[str, str]:
    model = _meta(name)
    names = model.paper_layer_names()
    return {names[p]: m.bypass_kind for p, m in model.named_modules() if isinstance(m, Fire)}


def test_bypasses_sit_where_section6_puts_them() -> None:
    # §6 / Fig. 2: simple bypass around fire3, 5, 7, 9 (equal widths); the complex variant adds
    # 1×1-conv bypasses around fire2, 4, 6, 8.
    simple = _bypass_kinds("squeezenet1_0_bypass")
    assert sorted(k for k, v in simple.items() if v == "simple") == ["fire3", "fire5", "fire7", "fire9"]
    assert sorted(k for k, v in simple.items() if v == "none") == ["fire2", "fire4", "fire6", "fire8"]
    complex_ = _bypass_kinds("squeezenet1_0_complex_bypass")
    assert sorted(k for k, v in complex_.items() if v == "simple") == ["fire3", "fire5", "fire7", "fire9"]
    assert sorted(k for k, v in complex_.items() if v == "complex") == ["fire2", "fire4", "fire6", "fire8"]


def test_bypass_parameter_cost() -> None:
    vanilla = _params(_meta("squeezenet1_0"))
    # A simple (identity) bypass has no parameters (§6).
    assert _params(_meta("squeezenet1_0_bypass")) == vanilla
    # Complex bypass: a 1×1 conv (weights + bias) input→output width around fire2/4/6/8, whose
    # widths are Table 1's: 96→128, 128→256, 256→384, 384→512.
    extra = sum(cin * cout + cout for cin, cout in [(96, 128), (128, 256), (256, 384), (384, 512)])
    assert _params(_meta("squeezenet1_0_complex_bypass")) == vanilla + extra


def test_simple_bypass_adds_the_module_input() -> None:
    torch.manual_seed(0)
    plain, bypassed = Fire(128, 16, 64, 64), Fire(128, 16, 64, 64, bypass="simple")
    bypassed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 128, 9, 9)
    assert torch.allclose(bypassed(x), plain(x) + x)
    with pytest.raises(ValueError, match="equal widths"):
        Fire(96, 16, 64, 64, bypass="simple")


def test_bypass_variants_share_the_vanilla_weights_and_change_the_output(tmp_path) -> None:
    torch.manual_seed(0)
    vanilla = cnnatlas.create_model("squeezenet1_0").eval()
    torch.save(vanilla.state_dict(), tmp_path / "w.pth")
    bypass = cnnatlas.load_weights(cnnatlas.create_model("squeezenet1_0_bypass"), tmp_path / "w.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(vanilla(x), bypass(x))
