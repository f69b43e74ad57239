"""GoogLeNet (Szegedy et al. 2014, arXiv:1409.4842): Table 1 structure, auxiliary heads and
their loss weighting, torchvision equivalence of ``googlenet_bn``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import cnnatlas
from cnnatlas.models.googlenet import INCEPTION_TABLE, GoogLeNetOutputs, Inception
from cnnatlas.registry import create_meta_model

# Table 1: output size of every inception module at 224×224 input (depth × spatial).
TABLE1_OUTPUTS = {
    "inception_3a": (256, 28),
    "inception_3b": (480, 28),
    "inception_4a": (512, 14),
    "inception_4b": (512, 14),
    "inception_4c": (512, 14),
    "inception_4d": (528, 14),
    "inception_4e": (832, 14),
    "inception_5a": (832, 7),
    "inception_5b": (1024, 7),
}


def _meta(name: str, **kwargs) -> nn.Module:
    return create_meta_model(name, **kwargs).eval()


def _inception_params(cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, pp: int, k5: int, bias: bool) -> int:
    weights = cin * c1 + cin * r3 + 9 * r3 * c3 + cin * r5 + k5 * k5 * r5 * c5 + cin * pp
    return weights + ((c1 + r3 + c3 + r5 + c5 + pp) if bias else 0)


def _paper_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    names = model.paper_layer_names()
    shapes: dict[str, tuple[int, ...]] = {}
    for path, module in model.named_children():
        paper_name = names.get(path, path)
        module.register_forward_hook(lambda m, a, out, n=paper_name: shapes.__setitem__(n, tuple(out.shape[1:])))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    return shapes


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_stage_outputs_follow_table1(name: str) -> None:
    shapes = _paper_shapes(_meta(name))
    assert shapes["conv1"] == (64, 112, 112)  # Table 1: convolution 7×7/2 → 112×112×64
    assert shapes["pool1"] == (64, 56, 56)
    assert shapes["conv2"] == (192, 56, 56)
    assert shapes["pool2"] == (192, 28, 28)
    for module, (depth, side) in TABLE1_OUTPUTS.items():
        assert shapes[module] == (depth, side, side), module
    assert shapes["pool4"] == (832, 7, 7)
    assert shapes["pool5"] == (1024, 1, 1)  # avg pool 7×7/1 → 1×1×1024


def test_paper_inception_modules_have_real_5x5_branches_and_table1_parameters() -> None:
    model = _meta("googlenet", aux_logits=False)
    names = model.paper_layer_names()
    by_paper_name = {names.get(path, path): module for path, module in model.named_modules()}
    chans = 192
    for name, widths in INCEPTION_TABLE:
        if widths is None:
            continue
        module = by_paper_name[name]
        assert isinstance(module, Inception)
        assert module.branch3[1].conv.kernel_size == (5, 5)  # Table 1 "#5×5"
        w = widths
        expected = _inception_params(
            chans, w.ch1x1, w.ch3x3_reduce, w.ch3x3, w.ch5x5_reduce, w.ch5x5, w.pool_proj, 5, bias=True
        )
        assert sum(p.numel() for p in module.parameters()) == expected, name
        chans = w.out_chans


def test_parameter_counts() -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(_meta("googlenet_bn")) == 6_624_904  # torchvision 0.29 weights metadata
    with torch.device("meta"):
        tv_aux = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    assert count(_meta("googlenet_bn", aux_logits=True)) == count(tv_aux)  # 13,004,888
    # Paper network: our count (conv biases included) 6,998,552; Table 1's parameter column sums
    # to 6.8M (docs/models/googlenet.md compares row by row). Each auxiliary head adds
    # 128·C + 2048·1024 + 1024·1000 weights and biases: C = 512 (4a) and 528 (4d).
    main = count(_meta("googlenet", aux_logits=False))
    assert main == 6_998_552
    assert abs(main - 6.8e6) / 6.8e6 < 0.03
    aux = sum(128 * c + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    assert count(_meta("googlenet")) == main + aux == 13_378_280


def test_torchvision_layout_keeps_the_3x3_in_the_5x5_branch() -> None:
    model = _meta("googlenet_bn")
    assert model.inception3a.branch3[1].conv.kernel_size == (3, 3)
    assert model.inception3a.branch1.bn.eps == 0.001
    assert not model.aux_logits and not hasattr(model, "aux1")


def test_training_returns_three_outputs_and_weights_auxiliary_losses_by_0_3() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("googlenet", num_classes=10).train()
    x, target = torch.randn(2, 3, 64, 64), torch.tensor([3, 7])
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs) and len(out) == 3
    assert all(o.shape == (2, 10) for o in out)
    assert model.main_logits(out) is out.logits
    expected = F.cross_entropy(out.logits, target) + 0.3 * (
        F.cross_entropy(out.aux_logits1, target) + F.cross_entropy(out.aux_logits2, target)
    )
    assert torch.allclose(model.training_loss(out, target), expected)
    # A logit temperature divides every head's logits before its cross-entropy.
    tempered = F.cross_entropy(out.logits / 4, target) + 0.3 * (
        F.cross_entropy(out.aux_logits1 / 4, target) + F.cross_entropy(out.aux_logits2 / 4, target)
    )
    assert torch.allclose(model.training_loss(out, target, temperature=4.0), tempered)


def test_eval_mode_does_not_run_the_auxiliary_heads() -> None:
    model = _meta("googlenet")
    calls: list[str] = []
    for name in ("aux1", "aux2"):
        getattr(model, name).register_forward_hook(lambda m, a, o, n=name: calls.append(n))
    out = model(torch.empty(1, 3, 224, 224, device="meta"))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000) and calls == []
    model.train()
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert calls == ["aux1", "aux2"]


def test_auxiliary_head_pools_5x5_stride_3_at_224() -> None:
    # §5: "average pooling layer with 5×5 filter size and stride 3, resulting in a 4×4×512
    # output for the (4a), and 4×4×528 for the (4d) stage".
    model = _meta("googlenet").train()
    seen: dict[str, tuple[int, ...]] = {}
    for name in ("aux1", "aux2"):
        getattr(model, name).pool.register_forward_hook(lambda m, a, o, n=name: seen.__setitem__(n, tuple(o.shape[1:])))
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert seen == {"aux1": (512, 4, 4), "aux2": (528, 4, 4)}
    head = model.aux1
    assert (head.fc1.in_features, head.fc1.out_features, head.dropout.p) == (2048, 1024, 0.7)


def test_paper_layer_names_cover_every_inception_module() -> None:
    for name in ("googlenet", "googlenet_bn"):
        display = set(_meta(name).paper_layer_names().values()) | {n for n, _ in _meta(name).named_children()}
        assert {m for m, _ in INCEPTION_TABLE if m.startswith("inception")} <= display
    assert _meta("googlenet_bn").paper_layer_names()["inception4e.branch3.1.conv"] == "inception_4e/5x5"


def _torchvision_pair(tmp_path: Path, **options) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, init_weights=True, **options)
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    ours = cnnatlas.load_weights(cnnatlas.create_model("googlenet_bn", **options), path)
    return ours, reference


@pytest.mark.parametrize("transform_input", [False, True])
def test_logits_match_torchvision(tmp_path: Path, transform_input: bool) -> None:
    ours, reference = _torchvision_pair(tmp_path, aux_logits=False, transform_input=transform_input)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours.eval()(x) - reference.eval()(x)).abs().max().item() <= 1e-5


def test_auxiliary_heads_load_and_match_torchvision_in_training(tmp_path: Path) -> None:
    ours, reference = _torchvision_pair(tmp_path, aux_logits=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert (ours.eval()(x) - reference.eval()(x)).abs().max().item() <= 1e-5
        # Same dropout draws: both run aux1, aux2 and the main dropout in that order.
        torch.manual_seed(1)
        mine = ours.train()(x)
        torch.manual_seed(1)
        theirs = reference.train()(x)
    for a, b in zip(mine, theirs):
        assert (a - b).abs().max().item() <= 1e-5
