"""AlexNet: torchvision's one-tower network and the 2012 two-tower network in both forms.

Sources: Krizhevsky, Sutskever & Hinton, NIPS 2012 (Fig. 2, §3, §5); the lecture notes' AlexNet
walkthrough (227×227 input); torchvision 0.29 weights metadata for the one-tower network.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.errors import InputError
from cnnatlas.layers import LocalResponseNorm
from cnnatlas.models.alexnet import AlexNet2012, AlexNet2012ModelParallel, TowerLocalResponseNorm
from cnnatlas.registry import create_meta_model
from cnnatlas.weights import save_weights


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str, **kwargs) -> nn.Module:
    return create_meta_model(name, **kwargs).eval()


def _randomise(model: nn.Module, seed: int = 0) -> None:
    """Weights with O(1) activations, so that logits differ between inputs and equality
    between the two forms is a meaningful check (§5's N(0, 0.01) init gives near-constant
    logits)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)


def test_parameter_counts() -> None:
    assert _params(_meta("alexnet")) == 61_100_840  # torchvision 0.29 weights metadata num_params
    assert _params(_meta("alexnet_2012")) == 60_965_224  # summed from NIPS 2012 Fig. 2 layer shapes (§1: 60 million)
    parallel = cnnatlas.create_model("alexnet_2012", devices=("meta", "meta"))
    assert _params(parallel) == 60_965_224  # same network, split in two towers


def test_2012_walkthrough_numbers() -> None:
    model = _meta("alexnet_2012")
    # Fig. 2 and the lecture notes: conv1 on 227×227×3 has (11·11·3)·96 = 34,848 weights, gives
    # 55×55×96; pool1 27×27×96.
    assert model.conv1.weight.numel() == 34_848
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"):
        getattr(model, name).register_forward_hook(lambda _m, _i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
    model(torch.empty(1, 3, 227, 227, device="meta"))
    # Fig. 2 (both towers together): 55×55×96, 27×27×256, 13×13×384, 13×13×384, 13×13×256,
    # pools overlapping 3×3/2 (§3.4), then 4096, 4096, 1000.
    assert shapes == {
        "conv1": (96, 55, 55),
        "pool1": (96, 27, 27),
        "conv2": (256, 27, 27),
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    }


def test_2012_tower_wiring_follows_fig_2() -> None:
    model = _meta("alexnet_2012")
    # Fig. 2 / §3.5: conv2, conv4, conv5 see only their own tower's maps; conv3 sees both.
    assert [model.conv2.groups, model.conv3.groups, model.conv4.groups, model.conv5.groups] == [2, 1, 2, 2]
    # §3.3 normalisation with k=2, n=5, α=1e-4, β=0.75, after the ReLU of conv1 and conv2.
    for norm in (model.norm1, model.norm2):
        assert isinstance(norm, TowerLocalResponseNorm) and norm.towers == 2
        assert (norm.norm.k, norm.norm.size, norm.norm.alpha, norm.norm.beta) == (2.0, 5, 1e-4, 0.75)
    names = [n for n, _ in model.named_children()]
    assert names.index("relu1") < names.index("norm1") < names.index("pool1") < names.index("conv2")
    # §4.2: dropout 0.5 on the outputs of the first two fully connected layers.
    assert names.index("fc6") < names.index("drop6") < names.index("fc7") < names.index("drop7") < names.index("fc8")
    assert model.drop6.p == model.drop7.p == 0.5


def test_2012_lrn_runs_within_each_tower() -> None:
    norm = TowerLocalResponseNorm()
    x = torch.randn(1, 8, 3, 3)
    halves = [LocalResponseNorm(5, 1e-4, 0.75, 2.0)(part) for part in x.chunk(2, dim=1)]
    torch.testing.assert_close(norm(x), torch.cat(halves, dim=1))


def test_2012_init_follows_section_5() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("alexnet_2012")
    # §5: biases 1 in conv2, conv4, conv5 and the hidden fc layers, 0 elsewhere; weights N(0, 0.01).
    biases = {
        n: float(getattr(model, n).bias.detach().mean())
        for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    }
    assert biases == {
        "conv1": 0.0,
        "conv2": 1.0,
        "conv3": 0.0,
        "conv4": 1.0,
        "conv5": 1.0,
        "fc6": 1.0,
        "fc7": 1.0,
        "fc8": 0.0,
    }
    assert abs(float(model.fc6.weight.detach().std()) - 0.01) < 1e-4


def test_2012_input_size_range_and_the_224_misprint() -> None:
    model = _meta("alexnet_2012")
    assert (model.min_input_size, model.max_input_size) == (227, 258)
    # (224 − 11)/4 + 1 is not an integer: the paper's "224×224" cannot give Fig. 2's 55×55.
    with pytest.raises(
        InputError, match=r"alexnet_2012 needs input between 227×227 and 258×258 pixels, got 224×224: layer fc6"
    ):
        model(torch.empty(1, 3, 224, 224, device="meta"))


def test_alexnet_matches_torchvision(tmp_path) -> None:
    from torchvision.models import alexnet as tv_alexnet

    torch.manual_seed(0)
    reference = tv_alexnet(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = cnnatlas.load_weights(cnnatlas.create_model("alexnet"), tmp_path / "w.pth").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() <= 1e-5


def test_alexnet_paper_layer_names_cover_every_layer() -> None:
    names = _meta("alexnet").paper_layer_names()
    assert [names[f"features.{i}"] for i in (0, 3, 6, 8, 10, 12)] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "pool5",
    ]
    assert [names[f"classifier.{i}"] for i in (1, 4, 6)] == ["fc6", "fc7", "fc8"]


# -- the model-parallel form -----------------------------------------------------------------
def test_model_parallel_towers_live_on_their_devices() -> None:
    model = cnnatlas.create_model("alexnet_2012", devices=("cpu", "meta"))
    assert isinstance(model, AlexNet2012ModelParallel)
    assert {p.device.type for p in model.tower0.parameters()} == {"cpu"}
    assert {p.device.type for p in model.tower1.parameters()} == {"meta"}
    # Each tower holds half of every layer: conv1 48 of 96 maps, fc6 2048 of 4096 units.
    assert model.tower0.conv1.out_channels == model.tower1.conv1.out_channels == 48
    assert model.tower1.conv2.in_channels == 48  # own tower's maps only
    assert model.tower1.conv3.in_channels == 256  # both towers' maps
    assert model.tower0.fc6.out_features == 2048 and model.tower0.fc6.in_features == 9216


def test_model_parallel_state_dict_has_the_single_device_layout() -> None:
    single = _meta("alexnet_2012")
    parallel = cnnatlas.create_model("alexnet_2012", devices=("meta", "meta"))
    assert [(k, tuple(v.shape)) for k, v in parallel.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in single.state_dict().items()
    ]


def test_two_forms_give_the_same_logits_with_exchanged_weights(tmp_path) -> None:
    torch.manual_seed(0)
    single = cnnatlas.create_model("alexnet_2012").eval()
    parallel = cnnatlas.create_model("alexnet_2012", devices=("cpu", "cpu")).eval()
    x = torch.randn(2, 3, 227, 227)
    # single → parallel through a file (as users exchange weights), then parallel → single
    # through state_dict / load_state_dict with fresh weights.
    for seed, source, target in ((0, single, parallel), (1, parallel, single)):
        _randomise(source, seed)
        if source is single:
            save_weights(source, tmp_path / "w.safetensors")
            cnnatlas.load_weights(target, tmp_path / "w.safetensors")
        else:
            target.load_state_dict(source.state_dict())
        with torch.no_grad():
            a, b = single(x), parallel(x)
        assert (a[0] - a[1]).abs().max() > 1e-3  # the logits depend on the input: the check has teeth
        assert (a - b).abs().max() <= 1e-5, f"seed {seed}"
        # The grouped conv2 weight is tower 0's rows followed by tower 1's.
        assert torch.equal(single.conv2.weight, torch.cat([parallel.tower0.conv2.weight, parallel.tower1.conv2.weight]))


def test_model_parallel_exchanges_activations_only_where_the_gpus_communicate(monkeypatch) -> None:
    model = cnnatlas.create_model("alexnet_2012", devices=("meta", "meta"))
    entered: list[str] = []
    for tower in ("tower0", "tower1"):
        for layer in ("conv3", "fc6", "fc7", "fc8"):
            getattr(model, tower).get_submodule(layer).register_forward_pre_hook(
                lambda m, args, n=f"{tower}.{layer}": entered.append(f"{n}:{args[0].shape[1]}")
            )
    calls: list[int] = []
    original = model._exchange
    monkeypatch.setattr(model, "_exchange", lambda a, b: (calls.append(1), original(a, b))[1])
    model.eval()(torch.empty(1, 3, 227, 227, device="meta"))
    # Fig. 2: into conv3, fc6, fc7 and fc8 — four exchanges; each receiving layer sees both towers.
    assert len(calls) == 4
    assert sorted(entered) == sorted(
        f"tower{t}.{name}" for t in (0, 1) for name in ("conv3:256", "fc6:9216", "fc7:4096", "fc8:4096")
    )


def test_model_parallel_form_passes_the_model_interface() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("alexnet_2012", num_classes=7, devices=("cpu", "cpu")).train()
    assert model.tower0.fc8.out_features + model.tower1.fc8.out_features == 7
    out = model(torch.randn(1, 3, 227, 227))
    model.training_loss(out, torch.tensor([6])).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(InputError, match="alexnet_2012 needs input"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(InputError, match="channel"):
        model(torch.randn(1, 1, 227, 227))
    model.reset_classifier(1)  # one class: tower 0 holds the single output unit
    assert model.num_classes == 1 and model.tower1.fc8 is None
    assert model.eval()(torch.randn(1, 3, 227, 227)).shape == (1, 1)
    assert (
        cnnatlas.create_model("alexnet_2012", num_classes=1).state_dict()["fc8.weight"].shape
        == model.state_dict()["fc8.weight"].shape
    )


def test_devices_are_validated() -> None:
    with pytest.raises(InputError, match="exactly two"):
        cnnatlas.create_model("alexnet_2012", devices=("cpu",))
    with pytest.raises(InputError, match="alexnet_2012"):
        cnnatlas.create_model("alexnet", devices=("cpu", "cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_parallel_across_a_gpu_and_the_cpu() -> None:
    torch.manual_seed(0)
    single = cnnatlas.create_model("alexnet_2012").eval()
    _randomise(single)
    parallel = cnnatlas.create_model("alexnet_2012", devices=("cuda:0", "cpu")).eval()
    parallel.load_state_dict(single.state_dict())
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        expected, got = single(x), parallel(x)
    assert got.device.type == "cuda"
    assert (expected - got.cpu()).abs().max() <= 1e-4  # TF32/cuDNN vs CPU arithmetic
    assert isinstance(single, AlexNet2012)


def test_alexnet_macs_match_torchvision_ops() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        _meta("alexnet")(torch.empty(1, 3, 224, 224, device="meta"))
    # torchvision 0.29 weights metadata: "_ops": 0.714 (GMACs at 224×224).
    assert round(counter.get_total_flops() / 2 / 1e9, 3) == 0.714


@pytest.mark.parametrize(
    ("name", "dropout_layers"),
    [("alexnet", ("classifier.0", "classifier.3")), ("alexnet_2012", ("drop6", "drop7"))],
)
def test_dropout_rate_is_a_model_option(name: str, dropout_layers: tuple[str, str]) -> None:
    # §4.2 uses 0.5; the builder passes any other rate through to both dropout layers.
    modules = dict(create_meta_model(name, dropout=0.3).named_modules())
    assert [modules[path].p for path in dropout_layers] == [0.3, 0.3]
    assert [dict(create_meta_model(name).named_modules())[path].p for path in dropout_layers] == [0.5, 0.5]
