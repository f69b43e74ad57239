"""ZFNet: Zeiler & Fergus 2013 (ECCV 2014, arXiv:1311.2901), Fig. 3 and Table 2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.errors import InputError
from cnnatlas.layers import LocalResponseNorm
from cnnatlas.registry import create_meta_model


def _meta(name: str) -> nn.Module:
    return create_meta_model(name).eval()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts() -> None:
    assert _params(_meta("zfnet")) == 62_357_608  # summed from Fig. 3 layer shapes (weights + biases)
    # Table 2 model (b): conv3–5 with 512, 1024, 512 maps; the paper prints no count, so it is
    # summed here from the Fig. 3 layer shapes with those widths (weights + biases).
    conv = [(3, 96, 7), (96, 256, 5), (256, 512, 3), (512, 1024, 3), (1024, 512, 3)]
    fc = [(512 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    expected = sum(i * o * k * k + o for i, o, k in conv) + sum(i * o + o for i, o in fc)
    assert _params(_meta("zfnet_wide")) == expected == 107_627_624


@pytest.mark.parametrize("name", ["zfnet", "zfnet_wide"])
def test_fig_3_map_sizes_at_224(name: str) -> None:
    model = _meta(name)
    sizes: dict[str, int] = {}
    for layer in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"):
        getattr(model, layer).register_forward_hook(lambda _m, _i, o, n=layer: sizes.__setitem__(n, o.shape[-1]))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    # Fig. 3: 110 (conv1), 55 (pool1), 26 (conv2), 13 (pool2, conv3, conv4, conv5), 6 (pool5).
    assert sizes == {
        "conv1": 110,
        "pool1": 55,
        "conv2": 26,
        "pool2": 13,
        "conv3": 13,
        "conv4": 13,
        "conv5": 13,
        "pool5": 6,
    }


def test_fig_3_layer_shapes_and_order() -> None:
    model = _meta("zfnet")
    # Fig. 3: 96 7×7 filters stride 2, 256 5×5 stride 2, 384/384/256 3×3 stride 1.
    assert [
        (c.out_channels, c.kernel_size[0], c.stride[0])
        for c in (model.conv1, model.conv2, model.conv3, model.conv4, model.conv5)
    ] == [(96, 7, 2), (256, 5, 2), (384, 3, 1), (384, 3, 1), (256, 3, 1)]
    assert all(c.groups == 1 for c in (model.conv2, model.conv4, model.conv5))  # one GPU, dense layers
    names = [n for n, _ in model.named_children()]
    # Fig. 3 caption: ReLU, then 3×3/2 max pooling, then contrast normalisation.
    assert names[:8] == ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2"]
    assert isinstance(model.norm1, LocalResponseNorm)
    # §3: dropout 0.5 in fully connected layers 6 and 7.
    assert model.drop6.p == model.drop7.p == 0.5
    assert names.index("fc6") < names.index("drop6") < names.index("fc7") < names.index("drop7") < names.index("fc8")


def test_fc6_pins_the_input_range() -> None:
    model = _meta("zfnet")
    assert (model.min_input_size, model.max_input_size) == (207, 238)
    with pytest.raises(InputError, match="zfnet needs input between 207×207 and 238×238 pixels, got 239×239"):
        model(torch.empty(1, 3, 239, 239, device="meta"))


def test_post_step_hook_caps_filter_rms_at_the_radius() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("zfnet")
    with torch.no_grad():
        model.conv1.weight[0].mul_(100.0)  # RMS ≈ 1, far above the radius
    small = model.conv1.weight[1].detach().clone()  # RMS ≈ 0.01 (§3 init), left alone
    model.after_optimizer_step()  # what the trainer calls: §3, filters with RMS > 10^-1 are renormalised
    rms = model.conv1.weight.detach().pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert abs(float(rms[0]) - 0.1) < 1e-6
    assert torch.equal(model.conv1.weight[1].detach(), small)
    assert float(rms.max()) <= 0.1 + 1e-6


def test_dropout_rate_is_a_model_option() -> None:
    # §3: dropout 0.5 on fc6 and fc7; the registered builder passes any other rate through.
    model = create_meta_model("zfnet_wide", dropout=0.3)
    assert (model.drop6.p, model.drop7.p) == (0.3, 0.3)
    assert model.conv4.out_channels == 1024  # the variant's own widths still apply
