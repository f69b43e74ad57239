"""LeNet-5: the 1998 network as published and the modern course form.

Every expected number cites LeCun et al. 1998, "Gradient-based learning applied to document
recognition" (Proc. IEEE), Section II.B.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cnnatlas
from cnnatlas.errors import InputError
from cnnatlas.models.lenet import BITMAP_HEIGHT, BITMAP_WIDTH, DIGIT_BITMAPS, EuclideanRBF, PartialConv2d

# Table I of the paper, transcribed as printed: rows are S2 maps 0–5, columns C3 maps 0–15.
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_per_layer_parameter_counts_match_section_ii_b() -> None:
    model = cnnatlas.create_model("lenet5")
    # Section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164 trainable parameters.
    expected = {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert {name: _params(getattr(model, name)) for name in expected} == expected


def test_totals_60000_trainable_plus_840_fixed_rbf() -> None:
    model = cnnatlas.create_model("lenet5")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # §II.B: 60,000 trainable parameters; the 10×84 RBF centres are fixed (60,840 in all).
    assert trainable == 60_000
    assert _params(model) == 60_840
    assert cnnatlas.model_info("lenet5").trainable_params == 60_000


def test_modern_form_parameter_count() -> None:
    # 156 + (6·16·25+16) + (400·120+120) + (120·84+84) + (84·10+10) = 61,706: the dense C3
    # and linear head of the course form (docs/models/lenet.md).
    assert _params(cnnatlas.create_model("lenet5_modern")) == 61_706


@pytest.mark.parametrize("training", [False, True], ids=["grouped-eval", "dense-train"])
def test_c3_connection_table_is_table_i(training: bool) -> None:
    c3 = cnnatlas.create_model("lenet5").c3.train(training)
    assert isinstance(c3, PartialConv2d)
    expected = [[ch == "X" for ch in row] for row in TABLE_I]
    assert c3.connection_table() == expected
    # Behavioural check, not just the stored table: output map j depends on input map i
    # exactly when Table I has an X at (i, j).
    x = torch.randn(1, 6, 10, 10, requires_grad=True)
    out = c3(x)
    for j in range(16):
        (grad,) = torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)
        depends = [bool(grad[0, i].abs().sum() > 0) for i in range(6)]
        assert depends == [expected[i][j] for i in range(6)], f"C3 map {j}"


def test_c3_macs_are_the_papers_arithmetic() -> None:
    # Section II.B: C3 has 151,600 connections = 1,516 params × 10×10 outputs; without the
    # 16 biases that is 150,000 multiply-adds — no multiplications by masked zeros.
    # Eval mode (what the analyser traces) runs the grouped form; training runs the same
    # function as one dense convolution with zero kernels (docs/models/lenet.md).
    c3 = cnnatlas.create_model("lenet5").c3.eval()
    with FlopCounterMode(display=False) as counter:
        c3(torch.randn(1, 6, 14, 14))
    assert counter.get_total_flops() // 2 == 150_000


def test_c3_dense_training_form_equals_grouped_form() -> None:
    # The training-mode dense kernel must compute the same outputs and give the real kernels the
    # same gradients as the grouped form, and the absent connections must stay exactly zero.
    torch.manual_seed(0)
    c3 = cnnatlas.create_model("lenet5").c3
    x = torch.randn(4, 6, 14, 14)
    grads = {}
    outs = {}
    for training in (False, True):
        c3.zero_grad(set_to_none=True)
        c3.train(training)
        outs[training] = c3(x)
        (outs[training] * torch.linspace(-1, 1, 16)[None, :, None, None]).sum().backward()
        grads[training] = [p.grad.clone() for p in c3.parameters()]
    torch.testing.assert_close(outs[True], outs[False], rtol=0, atol=1e-5)
    for dense_grad, grouped_grad in zip(grads[True], grads[False]):
        torch.testing.assert_close(dense_grad, grouped_grad, rtol=1e-5, atol=1e-5)
    absent = ~torch.tensor([[ch == "X" for ch in row] for row in TABLE_I]).T  # (out, in)
    dense = c3.dense_weight().detach()
    assert dense[absent].abs().sum() == 0
    assert dense[~absent].abs().sum() > 0
    assert [name for name, _ in c3.named_parameters()] == [
        f"groups.{g}.{kind}" for g in range(3) for kind in ("weight", "bias")
    ]


def test_stage_shapes_at_32x32() -> None:
    # Section II.B: C1 6@28×28, S2 6@14×14, C3 16@10×10, S4 16@5×5, C5 120@1×1, F6 84.
    model = cnnatlas.create_model("lenet5").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("c1", "s2", "c3", "s4", "c5", "f6"):
        getattr(model, name).register_forward_hook(lambda _m, _i, o, n=name: shapes.__setitem__(n, tuple(o.shape)))
    model(torch.randn(1, 1, 32, 32))
    assert shapes == {
        "c1": (1, 6, 28, 28),
        "s2": (1, 6, 14, 14),
        "c3": (1, 16, 10, 10),
        "s4": (1, 16, 5, 5),
        "c5": (1, 120, 1, 1),
        "f6": (1, 84),
    }


def test_squashing_function_is_appendix_a() -> None:
    # Appendix A: f(a) = 1.7159 tanh(2a/3), chosen so that f(±1) = ±1.
    act = cnnatlas.create_model("lenet5").act1
    a = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(act(a), 1.7159 * torch.tanh(2 * a / 3))
    torch.testing.assert_close(act(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0)


def test_subsampling_is_sum_times_coefficient_plus_bias() -> None:
    s2 = cnnatlas.create_model("lenet5").s2
    with torch.no_grad():
        s2.weight.copy_(torch.arange(1.0, 7.0))
        s2.bias.copy_(torch.arange(6.0) / 10)
    x = torch.randn(2, 6, 4, 4)
    block_sums = x.unfold(2, 2, 2).unfold(3, 2, 2).sum(dim=(-1, -2))
    expected = block_sums * torch.arange(1.0, 7.0).view(1, 6, 1, 1) + (torch.arange(6.0) / 10).view(1, 6, 1, 1)
    torch.testing.assert_close(s2(x), expected)


def test_output_is_negative_squared_distance_to_the_bitmaps() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("lenet5").eval()
    x = torch.randn(3, 1, 32, 32)
    f6 = model.act6(model.f6(model.forward_features(x)))
    centres = torch.tensor([[1.0 if c == "#" else -1.0 for row in bm for c in row] for bm in DIGIT_BITMAPS])
    direct = -((f6[:, None, :] - centres[None]) ** 2).sum(dim=-1)
    torch.testing.assert_close(model(x), direct, atol=1e-4, rtol=1e-5)


def test_rbf_centres_are_fixed_pm1_digit_bitmaps_and_get_no_gradient() -> None:
    model = cnnatlas.create_model("lenet5").train()
    rbf = model.output
    assert isinstance(rbf, EuclideanRBF)
    assert not rbf.weight.requires_grad
    assert rbf.weight.shape == (10, BITMAP_HEIGHT * BITMAP_WIDTH)  # Fig. 3: 7×12 bitmaps
    assert set(rbf.weight.unique().tolist()) == {-1.0, 1.0}
    assert all(len(bm) == BITMAP_HEIGHT and all(len(r) == BITMAP_WIDTH for r in bm) for bm in DIGIT_BITMAPS)
    # Distinct digits must be far apart, or the classifier could not separate them.
    hamming = (rbf.weight[:, None, :] != rbf.weight[None, :, :]).sum(-1)
    assert int(hamming[~torch.eye(10, dtype=torch.bool)].min()) >= 5
    loss = model.training_loss(model(torch.randn(2, 1, 32, 32)), torch.tensor([3, 7]))
    loss.backward()
    assert rbf.weight.grad is None
    assert model.f6.weight.grad is not None


def test_reset_classifier_keeps_fixed_distinct_codes() -> None:
    model = cnnatlas.create_model("lenet5")
    model.reset_classifier(26)
    codes = model.output.weight
    assert codes.shape == (26, 84) and not codes.requires_grad
    assert len({tuple(row.tolist()) for row in codes}) == 26
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 26)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_modern"])
def test_input_side_is_pinned_to_32(name: str) -> None:
    model = cnnatlas.create_model(name, in_chans=3)
    assert model.min_input_size == model.max_input_size == 32
    with pytest.raises(InputError, match="32×32"):
        model(torch.randn(1, 3, 36, 36))
