"""Model sources on the command line and in analyze(), any inputs, breakdowns, readable tables."""

from __future__ import annotations

import importlib
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnatlas.analysis import analyze
from cnnatlas.analysis.breakdown import breakdown
from cnnatlas.analysis.render import plain_table
from cnnatlas.cli import main
from cnnatlas.errors import InputError
from cnnatlas.sources import parse_model_options, resolve_model, resolve_source, source_kind

USER_FILE = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class MyNet(nn.Module):
        def __init__(self, width: int = 8, num_classes: int = 10):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
            self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
            self.lstm = nn.LSTM(width, 16, batch_first=True)
            self.scale = nn.Parameter(torch.ones(num_classes, 16))

        def forward(self, x):
            x = F.relu(self.conv(x))
            x = F.max_pool2d(self.dw(x), 2)
            x = self.up(x)
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear")
            seq = x.flatten(2).transpose(1, 2)
            out, _ = self.lstm(seq)
            return F.linear(out[:, -1], self.scale)

    def small(**options):
        return MyNet(width=4, **options)

    NOT_A_MODEL = 3
    """
)


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_net.py"
    path.write_text(USER_FILE)
    return path


def test_source_kinds() -> None:
    assert source_kind("resnet18") == "registered"
    assert source_kind("torchvision:resnet18") == "torchvision"
    assert source_kind("nets/my_net.py:MyNet") == "file"
    assert source_kind("my_net.py:MyNet") == "file"
    assert source_kind("torch.nn:Identity") == "module"


def test_user_file_class_and_function_with_options(user_file: Path) -> None:
    model = resolve_model(f"{user_file}:MyNet", width=6)
    assert model.conv.out_channels == 6
    small = resolve_model(f"{user_file}:small", num_classes=5, meta=True)
    assert small.conv.out_channels == 4 and small.scale.shape == (5, 16) and small.scale.is_meta
    assert parse_model_options(["width=6", "name=abc", "sizes=[1, 2]"]) == {"width": 6, "name": "abc", "sizes": (1, 2)}
    # the forms a shell user types: a bare tuple, JSON's true/null, dashes in the name
    parsed = parse_model_options(["widths=16,16,16", "aux-logits=true", "dropout=null", "kernels=(3,)"])
    assert parsed == {"widths": (16, 16, 16), "aux_logits": True, "dropout": None, "kernels": (3,)}
    with pytest.raises(InputError, match="NAME=VALUE"):
        parse_model_options(["=3"])


def test_package_module_source() -> None:
    resolved = resolve_source("torch.nn:Identity")
    assert isinstance(resolved.model, nn.Identity) and resolved.kind == "module"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.py:Net", "no such file"),
        ("{file}:Nope", "has no attribute 'Nope'; it defines MyNet, small"),
        ("{file}:NOT_A_MODEL", "is a int, not an nn.Module"),
        ("{file}:MyNet", "building it failed"),  # with an option MyNet does not take
        ("no_such_package_xyz.mod:Net", "no module named"),
        ("torchvision:resnet_nope", "torchvision has no classification model"),
    ],
)
def test_bad_sources_are_one_input_error(user_file: Path, source: str, message: str) -> None:
    options = {"depth": 3} if source == "{file}:MyNet" else {}
    with pytest.raises(InputError, match=re.escape(message)):
        resolve_model(source.format(file=user_file), **options)


def test_user_file_that_raises_while_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    assert main(["summary", f"{bad}:Net"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error: model source") and "RuntimeError: boom" in err and err.count("\n") == 1


def test_summary_of_user_file_custom_module(user_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", f"{user_file}:MyNet", "--input", "3x16x16", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in data["layers"]]
    assert {"conv", "dw", "up", "lstm"} <= set(names)
    # Hand count (bias excluded): conv 16·16 outputs × 8 filters × 3·3·3 taps; depthwise 16·16·8·9;
    # the transposed 2×2 stride-2 conv on the pooled 8×8 map: each of 8·8 input pixels × 8 channels
    # meets 8 filters × 4 taps; the bilinear ½ gives 8·8 = 64 LSTM steps of 4 gates × 16 × (8 + 16);
    # the final F.linear with the bare Parameter 16·10.
    conv, dw = 16 * 16 * 8 * 27, 16 * 16 * 8 * 9
    up = 8 * 8 * 8 * 8 * 4
    lstm = 64 * 4 * 16 * (8 + 16)
    assert data["totals"]["macs"] == conv + dw + up + lstm + 16 * 10
    assert data["totals"]["params"] == sum(p.numel() for p in resolve_model(f"{user_file}:MyNet").parameters())


def test_summary_of_torchvision_model_matches_flop_counter(capsys: pytest.CaptureFixture[str]) -> None:
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import mobilenet_v2

    assert main(["summary", "torchvision:mobilenet_v2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = mobilenet_v2().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert data["totals"]["macs"] * 2 == counter.get_total_flops()
    assert data["model"] == "torchvision:mobilenet_v2" and data["input_shape"] == [1, 3, 224, 224]


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5, stride=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(-1))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.embed = nn.Embedding(100, 4)
        self.fc = nn.Linear(8, 2)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(image).mean((2, 3))
        return self.fc(torch.cat([pooled, self.embed(tokens).mean(1)], 1))


def test_conv1d_and_two_input_models() -> None:
    one_d = analyze(Conv1dNet(), input_size=(1, 100))
    # Conv1d: 48 outputs × 4 channels × 5 taps; the linear layer 4·3.
    assert one_d.totals["macs"] == 48 * 4 * 5 + 4 * 3
    assert one_d.row("conv").receptive_field == 0  # no 2-D spatial path: left empty, not wrong
    two = analyze(TwoInputs(), input_size=[(3, 8, 8), (5,)], input_dtypes=["float32", "long"])
    assert two.totals["macs"] == 6 * 6 * 4 * 27 + 8 * 2
    assert [i["dtype"] for i in two.inputs] == ["float32", "int64"]
    by_keyword = analyze(
        TwoInputs(), input_data={"image": torch.zeros(2, 3, 8, 8), "tokens": torch.zeros(2, 5, dtype=torch.long)}
    )
    assert by_keyword.totals["macs"] == 2 * two.totals["macs"]
    as_tensors = analyze(TwoInputs(), input_data=(torch.zeros(1, 3, 8, 8), torch.zeros(1, 5, dtype=torch.long)))
    assert as_tensors.totals == two.totals


def test_cli_several_inputs_and_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    source = f"{Path(__file__).resolve()}:TwoInputs"
    args = ["summary", source, "--input", "3x8x8", "--input", "5", "--input-dtype", "float32"]
    assert main([*args, "--input-dtype", "long", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [i["shape"] for i in data["inputs"]] == [[1, 3, 8, 8], [1, 5]]
    assert main(["summary", f"{Path(__file__).resolve()}:Conv1dNet"]) == 2  # default 3×224×224 does not fit
    err = capsys.readouterr().err
    assert "--input" in err and "square" not in err


def test_breakdowns_add_up() -> None:
    result = analyze("resnet18")
    ops = breakdown(result, "operator")
    assert sum(g.macs for g in ops.groups) == result.totals["macs"]
    assert sum(g.flops for g in ops.groups) == result.totals["flops"]
    types = breakdown(result, "type")
    assert sum(g.flops for g in types.groups) == result.totals["flops"]
    modules = {g.key: g for g in breakdown(result, "module").groups}
    assert modules[""].macs == result.totals["macs"] and modules[""].params == result.totals["params"]
    top = [g for k, g in modules.items() if k and "." not in k]
    assert sum(g.flops for g in top) == result.totals["flops"] - sum(r.flops for r in result.layers if r.path == "")


def test_plain_table_never_cuts() -> None:
    text = plain_table(["name", "n"], [["a-very-long-layer-name", "123,456,789"], ["b\nwrapped", "1"]], [False, True])
    lines = text.splitlines()
    assert "a-very-long-layer-name  123,456,789" in lines[2]
    assert lines[4].strip() == "wrapped"


def test_piped_summary_and_compare_are_whole(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet152", "--columns", "layer,module,output,params,macs"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    result = analyze("resnet152")
    for layer in result.layers[:: max(1, len(result.layers) // 40)]:
        assert f"{layer.macs:,}" in out and layer.name in out and layer.path in out
    models = ["alexnet", "vgg16", "googlenet", "resnet50", "densenet121"]
    assert main(["compare", *models]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and all(m in out for m in models)
    assert main(["compare", "alexnet", "--columns", "model,params,nope"]) == 2
    assert "columns are" in capsys.readouterr().err


def test_bare_parameter_lstm_row_and_depth(user_file: Path) -> None:
    result = analyze(f"{user_file}:MyNet", input_size=(3, 16, 16))
    mm = next(r for r in result.layers if r.type == "mm")
    assert mm.params == 10 * 16  # the bare Parameter F.linear reads, not the first functional row
    assert all(r.params == 0 for r in result.layers if r.type[:1].islower() and r.type != "mm")
    assert result.row("lstm").spec == "LSTM, hidden 16"
    # Weighted layers on the longest path: conv, dw, up, lstm (its 64 steps count once), mm.
    assert result.totals["network_depth"] == 5
    assert "unsafe_split" not in result.uncounted_ops  # data movement is not "without a rule"


def test_training_flops_equal_flop_counter_forward_and_backward() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    # No bias, norm or activation: every FLOP is a MAC op, whose backward torch counts exactly.
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nn.Conv2d(8, 8, 3, stride=2, bias=False),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 4, bias=False),
    )
    result = analyze(net, input_size=(3, 16, 16))
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 3, 16, 16)).sum().backward()
    assert result.totals["training_flops"] == counter.get_total_flops()
    # The first layer needs no input gradient: 2×, the others 3× their forward FLOPs.
    conv1 = result.layers[0].flops
    assert result.totals["training_flops"] == 2 * conv1 + 3 * (result.totals["flops"] - conv1)


def test_registered_flop_rule_is_used_and_listed() -> None:
    from cnnatlas.analysis import register_flop_rule, rules

    net = nn.Sequential(nn.Conv2d(3, 4, 3), Lambda(lambda x: torch.roll(x, 1, -1).erf()))
    before = analyze(net, input_size=(3, 8, 8))
    assert "erf" in before.uncounted_ops and "roll" not in before.uncounted_ops
    try:

        @register_flop_rule(torch.ops.aten.erf, description="10 per element")
        def erf_flops(x_shape, *, out_shape) -> int:  # noqa: ANN001
            return 10 * int(torch.Size(out_shape).numel())

        after = analyze(net, input_size=(3, 8, 8))
    finally:
        rules.FLOP_RULES.pop("erf")
    assert "erf" not in after.uncounted_ops
    assert after.totals["flops"] - before.totals["flops"] == 10 * 4 * 6 * 6


class Lambda(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.fc(y)


def test_model_that_cannot_take_the_input_is_an_input_error() -> None:
    # forward(x, y) given one input: Python raises TypeError in the call, which is the user's problem
    with pytest.raises(InputError, match="missing 1 required positional argument"):
        analyze(_TwoInputs(), input_size=(4,))


def test_a_defect_in_the_tracer_is_not_reported_as_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # the package re-exports the function trace(), which hides the module of the same name
    trace_module = importlib.import_module("cnnatlas.analysis.trace")
    # Break one of the tracer's own helpers: the TypeError is raised inside the analyser's code,
    # so it must surface as the defect it is, not as "the model cannot run on this input".
    monkeypatch.setattr(trace_module, "storage_key", lambda: 0)
    with pytest.raises(TypeError):
        analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), input_size=(3, 8, 8))
