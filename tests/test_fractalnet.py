"""FractalNet (Larsson et al. 2017, arXiv:1605.07648): the expansion rule, drop-path (§3.1),
single-column evaluation and parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import cnnatlas
from cnnatlas.models.fractalnet import FractalBlock, FractalNet
from cnnatlas.registry import create_meta_model


def _small(num_columns: int = 3, **kwargs) -> FractalNet:
    # Narrow widths keep these behavioural tests fast; the structure is the paper's.
    torch.manual_seed(0)
    return cnnatlas.create_model("fractalnet20", num_columns=num_columns, widths=(4, 4, 4, 4, 4), **kwargs)


def _count_conv_calls(model: nn.Module) -> tuple[dict[str, int], list]:
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(
                module.register_forward_hook(lambda _m, _i, _o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
            )
    return calls, handles


def test_block_structure_follows_the_expansion_rule() -> None:
    # f_C has C columns; column c has 2^(c−1) convs, so a block holds 2^C − 1 convs and its
    # deepest path 2^(C−1); B = 5 blocks give 5·2^(C−1) = 20 (C=3) or 40 (C=4) layers (§2, §4).
    for name, columns, depth in (("fractalnet20", 3, 20), ("fractalnet40", 4, 40)):
        model = create_meta_model(name)
        blocks = [m for m in model.modules() if isinstance(m, FractalBlock)]
        assert len(blocks) == 5
        assert all(b.num_columns == columns for b in blocks)
        assert [len(blocks[0].column(c)) for c in range(1, columns + 1)] == [
            2 ** (c - 1) for c in range(1, columns + 1)
        ]
        assert sum(isinstance(m, nn.Conv2d) for m in blocks[0].modules()) == 2**columns - 1
        assert sum(len(b.column(columns)) for b in blocks) == depth
        pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
        assert len(pools) == 5 and all(p.kernel_size == 2 for p in pools)
        widths = [b.column(1)[0].conv.out_channels for b in blocks]
        assert widths == [64, 128, 256, 512, 512]  # §4


def test_fractalnet20_parameter_count_and_the_papers_38_6m() -> None:
    # §4 / Table 1 quote 38.6M parameters for the 20-layer network. The structure described
    # (5 blocks, 3 columns, 3×3 convs, widths 64-512) has 33.7M: 7 convs per block, of which
    # the 3 column-entry convs map C_in→C_out and 4 map C_out→C_out, plus BN and the classifier.
    widths = [3, 64, 128, 256, 512, 512]
    convs = sum(9 * (3 * cin * cout + 4 * cout * cout) for cin, cout in zip(widths, widths[1:]))
    batchnorm = sum(7 * 2 * cout for cout in widths[1:])
    classifier = 512 * 10 + 10
    model = create_meta_model("fractalnet20")
    total = sum(p.numel() for p in model.parameters())
    assert total == convs + batchnorm + classifier
    assert round(total / 1e6, 1) == 33.7  # not the paper's 38.6 — see docs/models/fractalnet.md


def _fractal_reference(block: FractalBlock, x: Tensor) -> Tensor:
    """The paper's recursion, written independently of the column layout:
    f₁(z) = [conv(z)],  f_{c+1}(z) = f_c(join(f_c(z))) + [conv(z)],  block = join(f_C(x)),
    with join = mean of the listed outputs (adjacent joins merged, as Fig. 1 draws them)."""
    C = block.num_columns

    def join(outputs: list[Tensor]) -> Tensor:
        return torch.stack(outputs).mean(0)

    def f(c: int, unit: int, z: Tensor) -> list[Tensor]:
        # c columns (the deepest c of the block) covering 2^(c−1) depth units from ``unit``;
        # its shallowest column is block column C−c+1, whose convs each span 2^(c−1) units.
        shallow = block.column(C - c + 1)[unit // 2 ** (c - 1)]
        if c == 1:
            return [shallow(z)]
        first = f(c - 1, unit, z)
        return f(c - 1, unit + 2 ** (c - 2), join(first)) + [shallow(z)]

    return join(f(C, 0, x))


@pytest.mark.parametrize("columns", [2, 3, 4])
def test_eval_runs_all_paths_exactly_as_the_expansion_rule(columns: int) -> None:
    torch.manual_seed(0)
    block = FractalBlock(3, 5, columns).eval()
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(block(x), _fractal_reference(block, x), atol=1e-6)


def test_eval_is_deterministic_and_runs_every_conv_once() -> None:
    model = _small().eval()
    calls, _ = _count_conv_calls(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    assert len(calls) == 5 * 7 and set(calls.values()) == {2}  # every conv, once per call


def test_training_output_varies_between_calls() -> None:
    model = _small()
    model.train()
    x = torch.randn(2, 3, 32, 32)
    outputs = [model(x) for _ in range(6)]
    assert any(not torch.allclose(outputs[0], o) for o in outputs[1:])


def test_global_drop_path_runs_exactly_one_column_everywhere() -> None:
    model = _small(global_drop_ratio=1.0)
    model.train()
    calls, _ = _count_conv_calls(model)
    seen = set()
    for _ in range(12):
        calls.clear()
        model(torch.randn(2, 3, 32, 32))
        column = int(model.last_path.split()[1])
        seen.add(column)
        # Only column c's 2^(c−1) convs ran, in all five blocks, each once.
        assert len(calls) == 5 * 2 ** (column - 1) and set(calls.values()) == {1}
        assert all(f".column{column}." in name for name in calls)
    assert seen == {1, 2, 3}  # every column gets chosen (uniformly, §3.1)


def test_local_drop_path_keeps_at_least_one_input_per_join() -> None:
    model = _small(global_drop_ratio=0.0, local_drop_rate=0.9)
    model.train()
    kept_counts: list[tuple[int, int]] = []
    for module in model.modules():
        if module.__class__.__name__ == "Join":
            module.register_forward_pre_hook(
                lambda m, args: kept_counts.append((len(args[0]), sum(args[1]) if args[1] is not None else -1))
            )
    for _ in range(10):
        model(torch.randn(2, 3, 32, 32))
    assert kept_counts and all(1 <= kept <= n for n, kept in kept_counts)
    assert any(kept < n for n, kept in kept_counts)  # drop rate 0.9: drops do happen


def test_mixed_drop_path_uses_both_modes() -> None:
    model = _small()  # paper defaults: 50 % global, 50 % local with p = 0.15
    assert (model.global_drop_ratio, model.local_drop_rate) == (0.5, 0.15)
    model.train()
    paths = set()
    for _ in range(20):
        model(torch.randn(1, 3, 32, 32))
        paths.add("local" if model.last_path == "local" else "global")
    assert paths == {"local", "global"}


def test_single_column_evaluation_runs_only_that_column() -> None:
    model = _small().eval()
    calls, _ = _count_conv_calls(model)
    x = torch.randn(2, 3, 32, 32)
    model.set_column(3)  # deepest column alone (Table 1, "deepest column alone")
    with torch.no_grad():
        deepest = model(x)
    assert len(calls) == 5 * 4 and all(".column3." in n for n in calls)
    # It equals the plain chain of that column's convs and pools.
    with torch.no_grad():
        y = x
        for b in range(1, 6):
            y = getattr(model.features, f"pool{b}")(getattr(model.features, f"block{b}").column3(y))
        assert torch.allclose(deepest, model.forward_head(y))
    model.set_column(None)
    calls.clear()
    with torch.no_grad():
        model(x)
    assert len(calls) == 35
    with pytest.raises(ValueError):
        model.set_column(4)
    # The same through the builder option.
    assert _small(column=1).column == 1


def test_meta_model_trains_with_drop_path() -> None:
    model = create_meta_model("fractalnet40")
    model.train()
    for _ in range(3):
        assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_per_block_dropout_rates() -> None:
    # §4: dropout rates per block 0, 10, 20, 30, 40 % in the regularised setting (our default).
    model = create_meta_model("fractalnet20")
    rates = []
    for b in range(1, 6):
        block = getattr(model.features, f"block{b}")
        found = {m.p for m in block.modules() if isinstance(m, nn.Dropout)}
        rates.append(found.pop() if found else 0.0)
    assert rates == [0.0, 0.1, 0.2, 0.3, 0.4]
