"""The residual family (cnnatlas.models.resnet): ResNet and plain nets, pre-activation ResNet,
Wide ResNet, ResNeXt, stochastic depth. Every expected number names its source."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnatlas
from cnnatlas.errors import InputError
from cnnatlas.models.resnet import (
    BasicBlock,
    ResNet,
    ZeroPadShortcut,
    count_executed_blocks,
    survival_probabilities,
)
from cnnatlas.registry import create_meta_model


def _children_run_by(call, module: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of ``module``'s direct children in the order ``call(x)`` runs them."""
    ran: list[str] = []
    handles = [
        child.register_forward_pre_hook(lambda *_, name=name: ran.append(name))
        for name, child in module.named_children()
    ]
    with torch.no_grad():
        call(x)
    for handle in handles:
        handle.remove()
    return ran


def _meta(name: str, **kwargs) -> ResNet:
    return create_meta_model(name, **kwargs)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _params_without_bn(model: nn.Module) -> int:
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    return _params(model) - bn


def _macs(model: nn.Module, side: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        model.eval()(torch.empty(1, model.in_chans, side, side, device="meta"))
    return counter.get_total_flops() // 2


# -- parameter counts ----------------------------------------------------------------------

EXACT_PARAMS = {
    # torchvision 0.29 weights metadata (num_params of the IMAGENET1K_V1 weights)
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    # summed from §4.2's CIFAR architecture (He et al. 2015 Table 6 rounds them to 0.27M and 1.7M)
    "resnet20": 269_722,
    "resnet110": 1_727_962,
    # summed from Table 1's WRN-28-10 (Zagoruyko & Komodakis 2016 Table 5 rounds it to 36.5M)
    "wrn28_10": 36_479_194,
}


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_exact_parameter_counts(name: str) -> None:
    assert _params(_meta(name)) == EXACT_PARAMS[name]
    assert cnnatlas.model_info(name).params == EXACT_PARAMS[name]


# (name, published millions, source). The pre-activation and ResNeXt papers count convolution
# and fc weights only: with BN's γ/β the totals are 10.33M and 68.16M, without them 10.18M and
# 68.05M, which is what they print. We compare both ways where the rounding tells them apart.
ROUNDED_PARAMS = [
    ("resnet20", 0.27, "He et al. 2015 Table 6", _params),
    ("resnet32", 0.46, "He et al. 2015 Table 6", _params),
    ("resnet44", 0.66, "He et al. 2015 Table 6", _params),
    ("resnet56", 0.85, "He et al. 2015 Table 6", _params),
    ("resnet110", 1.7, "He et al. 2015 Table 6", _params),
    ("resnet1202", 19.4, "He et al. 2015 Table 6", _params),
    ("preact_resnet110", 1.7, "He et al. 2016 Table 3", _params),
    ("preact_resnet164", 1.7, "He et al. 2016 Table 3", _params),
    ("preact_resnet1001", 10.2, "He et al. 2016 Table 3 (without BN parameters)", _params_without_bn),
    ("wrn40_4", 8.9, "Zagoruyko & Komodakis 2016 Table 5", _params),
    ("wrn16_8", 11.0, "Zagoruyko & Komodakis 2016 Table 5", _params),
    ("wrn28_10", 36.5, "Zagoruyko & Komodakis 2016 Table 5", _params),
    ("wide_resnet50_2", 68.9, "Zagoruyko & Komodakis 2016 Table 8 (WRN-50-2-bottleneck)", _params),
    ("resnext29_8x64d", 34.4, "Xie et al. 2017 Table 7", _params),
    ("resnext29_16x64d", 68.1, "Xie et al. 2017 Table 7 (without BN parameters)", _params_without_bn),
]


@pytest.mark.parametrize(("name", "millions", "source", "count"), ROUNDED_PARAMS, ids=[r[0] for r in ROUNDED_PARAMS])
def test_parameter_counts_round_to_the_published_figures(name: str, millions: float, source: str, count) -> None:
    digits = 2 if millions < 1 else 1
    assert round(count(_meta(name)) / 1e6, digits) == millions, source


def test_published_counts_exclude_batch_norm() -> None:
    # The evidence for the counting rule above: with BN included the 1001-layer net is 10.3M,
    # not the 10.2M of He et al. 2016 Table 3, and ResNeXt-29 16×64d is 68.2M, not 68.1M.
    assert round(_params(_meta("preact_resnet1001")) / 1e6, 1) == 10.3
    assert round(_params(_meta("resnext29_16x64d")) / 1e6, 1) == 68.2


# -- multiply-adds -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gmacs"),
    # He et al. 2015 Table 1 "FLOPs" (multiply-adds) ×10⁹, with the paper's stride placement
    [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8), ("resnet101", 7.6), ("resnet152", 11.3)],
)
def test_paper_stride_placement_gives_table_1_mult_adds(name: str, gmacs: float) -> None:
    macs = _macs(_meta(name, stride_on_1x1=True), 224)
    # The paper prints one decimal; ResNet-50 measures 3.86 G, which it prints as 3.8.
    assert abs(macs / 1e9 - gmacs) < 0.07


def test_torchvision_stride_placement_costs_more() -> None:
    # torchvision 0.29 weights metadata: ResNet-50 "_ops" 4.089 GFLOPs (= G mult-adds).
    assert round(_macs(_meta("resnet50"), 224) / 1e9, 3) == 4.089
    # Moving the stride to the 1×1 changes cost, not parameters or keys.
    assert _meta("resnet50").state_dict().keys() == _meta("resnet50", stride_on_1x1=True).state_dict().keys()


def test_stride_on_1x1_moves_the_stride_to_the_first_convolution() -> None:
    first = _meta("resnet50", stride_on_1x1=True).layer2[0]
    assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))
    default = _meta("resnet50").layer2[0]
    assert (default.conv1.stride, default.conv2.stride) == ((1, 1), (2, 2))


# -- torchvision equivalence ---------------------------------------------------------------

RESIDUAL_FAMILIES = {"resnet", "preact_resnet", "wide_resnet", "resnext", "stochastic_depth"}
TORCHVISION_COMPATIBLE = [
    n
    for n in cnnatlas.list_models()
    if cnnatlas.model_info(n).family in RESIDUAL_FAMILIES and cnnatlas.model_info(n).torchvision_name
]


def test_every_torchvision_compatible_variant_is_listed() -> None:
    assert sorted(TORCHVISION_COMPATIBLE) == sorted(
        [
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "resnet152",
            "wide_resnet50_2",
            "wide_resnet101_2",
            "resnext50_32x4d",
            "resnext101_32x8d",
            "resnext101_64x4d",
        ]
    )


@pytest.mark.parametrize("name", TORCHVISION_COMPATIBLE)
def test_torchvision_weights_give_the_same_logits(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    reference = getattr(tvm, cnnatlas.model_info(name).torchvision_name)(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    # Build ours without initialising (every tensor is overwritten by the load).
    ours = _meta(name).to_empty(device="cpu")
    cnnatlas.load_weights(ours, tmp_path / "w.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours.eval()(x) - reference(x)).abs().max().item()
    assert diff <= 1e-5


def test_torchvision_init_scheme_is_copied() -> None:
    model = cnnatlas.create_model("resnet18")
    bn = model.layer1[0].bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    conv = model.layer3[0].conv1  # Kaiming normal, fan_out: std = sqrt(2 / (256 · 3 · 3))
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    zero = cnnatlas.create_model("resnet18", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for b in zero.blocks())


# -- structure -----------------------------------------------------------------------------


def _stage_shapes(model: ResNet, side: int) -> dict[str, tuple[int, ...]]:
    names = model.paper_layer_names()
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, key=names[path]: shapes.__setitem__(key, tuple(out.shape[1:])))
        for path, module in model.named_modules()
        if path in names and names[path] in ("conv1", "pool1") or names.get(path, "").endswith("_x")
    ]
    model.eval()(torch.empty(1, model.in_chans, side, side, device="meta"))
    for handle in handles:
        handle.remove()
    return shapes


def test_imagenet_stage_outputs_follow_table_1() -> None:
    # He et al. 2015 Table 1: output sizes 112, 56, 28, 14, 7; bottleneck outputs 256 … 2048.
    assert _stage_shapes(_meta("resnet50"), 224) == {
        "conv1": (64, 112, 112),
        "pool1": (64, 56, 56),
        "conv2_x": (256, 56, 56),
        "conv3_x": (512, 28, 28),
        "conv4_x": (1024, 14, 14),
        "conv5_x": (2048, 7, 7),
    }
    assert _stage_shapes(_meta("resnet34"), 224)["conv5_x"] == (512, 7, 7)


def test_cifar_stage_outputs_follow_section_4_2() -> None:
    # He et al. 2015 §4.2: feature maps 32, 16, 8 with 16, 32, 64 filters.
    shapes = _stage_shapes(_meta("resnet56"), 32)
    assert [shapes[k] for k in ("conv2_x", "conv3_x", "conv4_x")] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    # ResNeXt-29 (Xie et al. 2017 §5.3): 256, 512, 1024 output channels.
    shapes = _stage_shapes(_meta("resnext29_8x64d"), 32)
    assert [shapes[k][0] for k in ("conv2_x", "conv3_x", "conv4_x")] == [256, 512, 1024]


@pytest.mark.parametrize(
    ("name", "depth"),
    [
        ("resnet18", 18),
        ("resnet34", 34),
        ("resnet50", 50),
        ("resnet152", 152),
        ("plain34", 34),
        ("resnet20", 20),
        ("resnet110", 110),
        ("plain56", 56),
        ("preact_resnet164", 164),
        ("resnext29_8x64d", 29),
    ],
)
def test_depth_counts_weighted_layers_on_the_main_path(name: str, depth: int) -> None:
    # The papers' depth: convolutions and fc on the main path, projection shortcuts excluded.
    model = _meta(name)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and "downsample" not in n]
    assert len(layers) == depth


def test_wrn_depth_is_6n_plus_4_convolutions() -> None:
    # Zagoruyko & Komodakis 2016 (Table 1 and their code) count every convolution, the three
    # 1×1 shortcut convolutions included, and not the classifier: WRN-28-10 has n = 4.
    model = _meta("wrn28_10")
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 28
    assert [len(model.layer1), model.layer1[0].conv1.out_channels, model.layer3[0].conv2.out_channels] == [4, 160, 640]


def test_resnext_uses_one_grouped_convolution() -> None:
    block = _meta("resnext50_32x4d").layer1[0]
    # Xie et al. 2017 Table 1: conv2 of ResNeXt-50 is [1×1 128, 3×3 128 C=32, 1×1 256].
    assert (block.conv1.out_channels, block.conv2.groups, block.conv2.out_channels, block.conv3.out_channels) == (
        128,
        32,
        128,
        256,
    )
    cifar = _meta("resnext29_16x64d").layer1[0]
    assert (cifar.conv2.groups, cifar.conv2.out_channels) == (16, 1024)  # 16 groups of 64 channels


def test_paper_layer_names_map_torchvision_keys_to_table_1() -> None:
    names = _meta("resnet50").paper_layer_names()
    assert {k: names[k] for k in ("conv1", "maxpool", "layer1", "layer4", "fc")} == {
        "conv1": "conv1",
        "maxpool": "pool1",
        "layer1": "conv2_x",
        "layer4": "conv5_x",
        "fc": "fc",
    }
    assert names["layer3.5"] == "conv4_6"


# -- shortcuts -----------------------------------------------------------------------------


def _projection_params(model: ResNet) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "downsample" in n)


def test_option_a_adds_no_parameters() -> None:
    assert _projection_params(_meta("resnet20")) == 0
    assert _params(_meta("resnet20")) == _params(_meta("plain20"))
    assert _params(_meta("resnet34", shortcut="A")) == _params(_meta("plain34"))


def test_resnet20_option_b_adds_exactly_the_projections() -> None:
    # Two stages change dimensions (16→32, 32→64): each gets a 1×1 conv + BN (γ, β).
    expected = sum(c_in * c_out + 2 * c_out for c_in, c_out in ((16, 32), (32, 64)))
    assert _params(_meta("resnet20", shortcut="B")) - _params(_meta("resnet20")) == expected == 2752
    # Option C projects every one of the 9 blocks.
    all_blocks = 3 * (16 * 16 + 32) + (16 * 32 + 64) + 2 * (32 * 32 + 64) + (32 * 64 + 128) + 2 * (64 * 64 + 128)
    assert _params(_meta("resnet20", shortcut="C")) - _params(_meta("resnet20")) == all_blocks


def test_plain_twins_are_the_same_stacks_without_projections() -> None:
    for resnet, plain in (("resnet18", "plain18"), ("resnet34", "plain34"), ("resnet110", "plain110")):
        res, pln = _meta(resnet), _meta(plain)
        assert _params(res) - _projection_params(res) == _params(pln)
        assert not any(isinstance(m, ZeroPadShortcut) or "downsample" in n for n, m in pln.named_modules())


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and torch.count_nonzero(out[:, 16:]) == 0


def test_plain_block_has_no_sum() -> None:
    torch.manual_seed(0)
    block = BasicBlock(8, 8, shortcut="none").eval()  # two 3×3 layers
    x = torch.randn(1, 8, 6, 6)
    assert torch.equal(block(x), torch.relu(block.residual(x)))


def test_unknown_shortcut_is_an_input_error() -> None:
    with pytest.raises(InputError, match="shortcut"):
        cnnatlas.create_model("resnet20", shortcut="D")


# -- pre-activation ------------------------------------------------------------------------


def test_preact_identity_path_is_clean() -> None:
    # He et al. 2016 eq. 4: x_{l+1} = x_l + F(x_l), nothing applied after the sum.
    torch.manual_seed(0)
    model = cnnatlas.create_model("preact_resnet110").eval()
    block = model.layer2[3]
    assert block.downsample is None and block.relu is None
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x) - x, block.residual(x), atol=1e-6)
    # BN → ReLU → conv ordering inside the branch
    order = [n for n, _ in block.named_children()]
    assert order[:3] == ["bn1", "relu1", "conv1"]
    # and the network ends with BN-ReLU before the pooling (§3.2)
    ran = _children_run_by(model.forward_features, model, torch.randn(1, 3, 32, 32))
    assert isinstance(model.bn_final, nn.BatchNorm2d) and ran[-2:] == ["bn_final", "relu_final"]


def test_preact_projection_sees_the_preactivated_input() -> None:
    torch.manual_seed(0)
    block = cnnatlas.create_model("preact_resnet164").eval().layer2[0]
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        expected = block.downsample(block.relu1(block.bn1(x))) + block.residual(x)
        assert torch.allclose(block(x), expected, atol=1e-6)
    assert len(block.downsample) == 1  # 1×1 conv only: the BN is the block's own pre-activation


def test_imagenet_preact_first_block_reuses_the_stem_activation() -> None:
    # The authors' ImageNet pre-act net: conv1-BN-ReLU-pool, then a first block without BN-ReLU.
    model = _meta("preact_resnet50")
    assert model.layer1[0].bn1 is None and model.layer1[1].bn1 is not None
    assert model.layer2[0].bn1 is not None
    assert not any(key.startswith("layer1.0.bn1") for key in model.state_dict())


def test_wrn_dropout_sits_between_the_two_convolutions() -> None:
    torch.manual_seed(0)
    block = cnnatlas.create_model("wrn16_8", dropout=0.3).layer1[1]
    ran = _children_run_by(block, block, torch.randn(1, 128, 8, 8))
    assert ran.index("dropout") == ran.index("conv2") - 1
    assert block.dropout.p == 0.3
    x = torch.randn(1, 128, 8, 8)
    block.train()
    assert not torch.equal(block(x), block(x))
    block.eval()
    assert torch.equal(block(x), block(x))


# -- stochastic depth ----------------------------------------------------------------------


def test_survival_probability_decays_linearly_to_p_l() -> None:
    # Huang et al. 2016 eq. 4: p_l = 1 − l/L (1 − p_L); resnet110_sd: L = 54 blocks, p_L = 0.5.
    model = _meta("resnet110_sd")
    survivals = [b.survival for b in model.blocks()]
    assert len(survivals) == 54
    assert survivals == pytest.approx([1 - block / 54 * 0.5 for block in range(1, 55)])
    assert survivals[-1] == pytest.approx(0.5) and survivals[26] == pytest.approx(0.75)
    assert survival_probabilities(4, 0.2) == pytest.approx([0.95, 0.9, 0.85, 0.8])


@pytest.mark.parametrize("name", ["resnet50", "preact_resnet164", "wrn16_8", "resnext29_8x64d", "resnet20"])
def test_every_residual_family_takes_drop_path_rate(name: str) -> None:
    blocks = _meta(name, drop_path_rate=0.2).blocks()
    assert blocks[-1].survival == pytest.approx(0.8)
    assert blocks[0].survival == pytest.approx(1 - 0.2 / len(blocks))


def test_plain_net_rejects_stochastic_depth() -> None:
    with pytest.raises(InputError, match="plain"):
        cnnatlas.create_model("plain20", drop_path_rate=0.5)


def test_training_drops_whole_blocks_once_per_batch() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("resnet110_sd").train()
    x = torch.randn(4, 3, 16, 16)
    executed = []
    outputs = []
    for _ in range(3):
        with count_executed_blocks(model) as counts:
            outputs.append(model(x))
        assert set(counts.values()) <= {0, 1}  # one decision per mini-batch, per block
        executed.append(sum(counts.values()))
    # Expected number of surviving blocks: Σ p_l = 54 − 0.5 · 55/2 = 40.25.
    assert all(20 < n < 54 for n in executed)
    assert not torch.equal(outputs[0], outputs[1])
    # Hooks are gone after the with-block: the hot path carries no counters.
    assert all(not b.conv1._forward_hooks for b in model.blocks())


def test_dropped_transition_block_still_runs_its_shortcut() -> None:
    torch.manual_seed(0)
    block = cnnatlas.create_model("resnet110_sd").layer2[0].train()  # option A, 16 → 32
    block.survival = 1e-12  # practically always dropped
    x = torch.randn(2, 16, 8, 8)
    with count_executed_blocks(block) as counts:
        out = block(x)
    assert counts[""] == 0
    assert torch.equal(out, torch.relu(block.downsample(x)))


def test_eval_runs_every_block_scaled_by_its_survival_probability() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("resnet110_sd").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), count_executed_blocks(model) as counts:
        first, second = model(x), model(x)
        # The paper's test rule (eq. 5) written out: H_l = ReLU(p_l · f_l(H_{l−1}) + id(H_{l−1})).
        h = model.relu(model.bn1(model.conv1(x)))
        for block in model.blocks():
            shortcut = h if block.downsample is None else block.downsample(h)
            h = torch.relu(block.survival * block.residual(h) + shortcut)
        manual = model.fc(torch.flatten(model.avgpool(h), 1))
    assert torch.equal(first, second)
    assert torch.allclose(first, manual, atol=1e-5)
    assert all(n == 3 for n in counts.values())  # two model calls + the manual pass: no block skipped
    # and the same weights without stochastic depth compute something else (the scaling matters)
    plain = cnnatlas.create_model("resnet110")
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(x), first, atol=1e-3)


def test_stochastic_depth_trains_on_the_meta_device() -> None:
    model = _meta("resnet110_sd").train()
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_activation_memory_matches_torchvision() -> None:
    # Residuals are added in place (torchvision's `out += identity`), so a block's sum writes into
    # its last BN output instead of allocating a new map: ResNet-18 at 224×224 then holds the same
    # activation elements as torchvision's resnet18 in the analyser (5.17 M, docs/analysis.md).
    with torch.device("meta"):
        reference = tvm.resnet18()
    ours = cnnatlas.analyze("resnet18", input_size=(3, 224, 224)).totals
    theirs = cnnatlas.analyze(reference, input_size=(3, 224, 224)).totals
    assert ours["activations"] == theirs["activations"]
    assert ours["saved_activation_bytes"] == theirs["saved_activation_bytes"]


def test_preact_cifar_results_cite_the_papers_tables() -> None:
    # He et al. 2016 (arXiv:1603.05027): CIFAR-10 errors are in Table 3, CIFAR-100 errors in Table 4.
    table = {"CIFAR-10": "Table 3", "CIFAR-100": "Table 4"}
    results = [r for name in ("preact_resnet164", "preact_resnet1001") for r in cnnatlas.model_info(name).results]
    assert {r.dataset for r in results} == {"CIFAR-10", "CIFAR-100"}
    for result in results:
        assert result.source.startswith(table[result.dataset]), result
