"""The analyser on small hand-built networks: conventions, rows, rendering, CLI, errors.

Expected numbers here are computed by hand from the layer shapes in each test (the rules are
in docs/analysis.md); the paper/lecture-note figures live in test_analysis_papers.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnatlas
from cnnatlas.analysis import analyze
from cnnatlas.analysis.trace import _FAST_META, _fast_pointwise
from cnnatlas.base import AtlasModel
from cnnatlas.cli import main
from cnnatlas.errors import InputError


class TwoPath(AtlasModel):
    """A residual join, an Inception-style concat, in-place ReLU, functional pooling and
    flatten, and a fixed (non-trainable) parameter — every case the conventions name."""

    min_input_size = 2

    def __init__(self, *, num_classes: int = 5, in_chans: int = 3) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.stem = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.branch3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.branch5 = nn.Conv2d(8, 4, 5, padding=2, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(12, num_classes)
        self.register_parameter("scale", nn.Parameter(torch.ones(num_classes), requires_grad=False))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        x = x + self.branch3(x)  # residual join: a functional "add" row
        x = torch.cat([x, self.branch5(x)], dim=1)  # a functional "cat" row
        return self.pool(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x) * self.scale

    def paper_layer_names(self) -> dict[str, str]:
        return {"stem": "conv1", "fc": "fc"}


@pytest.fixture(scope="module")
def two_path() -> cnnatlas.analysis.Analysis:
    return analyze(TwoPath(), input_size=(3, 8, 8))


def test_rows_cover_leaf_modules_and_functional_ops(two_path) -> None:
    names = [row.name for row in two_path.layers]
    assert names[:2] == ["conv1", "relu"]
    for functional in ("add", "cat", "mean", "view", "mul"):  # F.adaptive_avg_pool2d(x, 1) is aten.mean
        assert any(r.type == functional for r in two_path.layers), (functional, names)
    add = next(r for r in two_path.layers if r.type == "add")
    assert add.output_shape == [1, 8, 8, 8] and add.activations == 8 * 8 * 8 and add.flops == 8 * 8 * 8
    cat = next(r for r in two_path.layers if r.type == "cat")
    assert cat.output_shape == [1, 12, 8, 8] and cat.flops == 0 and cat.activations == 12 * 64


def test_in_place_and_view_outputs_are_not_new_activations(two_path) -> None:
    assert two_path.row("relu").activations == 0  # ReLU(inplace=True) writes into conv1's output
    assert next(r for r in two_path.layers if r.type == "view").activations == 0
    assert two_path.row("conv1").activations == 8 * 8 * 8
    assert two_path.totals["input_activations"] == 3 * 8 * 8
    assert two_path.totals["activations"] == sum(r.activations for r in two_path.layers)
    assert two_path.totals["activation_bytes"] == 4 * two_path.totals["activations"]


def test_costs_follow_the_rule_table(two_path) -> None:
    conv1 = two_path.row("conv1")
    assert conv1.weight_params == 3 * 3 * 3 * 8 and conv1.bias_params == 8
    assert conv1.macs == 27 * 8 * 64
    assert conv1.flops == 2 * conv1.macs + 8 * 64  # + bias add per output element
    assert two_path.row("relu").flops == 8 * 64
    pool = two_path.row("pool")
    assert pool.flops == (4 - 1) * 12 * 16  # 2×2 max pool: 3 comparisons per output
    assert two_path.row("branch3").flops == 2 * two_path.row("branch3").macs  # no bias
    fc = two_path.row("fc")
    assert fc.macs == 12 * 5 and fc.flops == 2 * 60 + 5 and fc.spec == "FC 5"
    gap = next(r for r in two_path.layers if r.type == "mean")
    assert gap.flops == 12 * 16 and gap.spec == "global avg pool"


def test_params_totals_split_trainable_and_fixed(two_path) -> None:
    t = two_path.totals
    # stem 3·8·9 + 8, branch3 8·8·9, branch5 8·4·25, fc 12·5 + 5, the fixed scale 5
    assert t["params"] == 224 + 576 + 800 + 65 + 5 == 1670
    assert t["fixed_params"] == 5 and t["trainable_params"] == t["params"] - 5
    assert sum(r.params for r in two_path.layers) == t["params"]
    assert t["param_bytes"] == 4 * t["params"]
    assert t["gradient_bytes"] == 4 * t["trainable_params"]
    assert t["optimizer_state_bytes"] == t["gradient_bytes"]  # momentum: one buffer
    adam = analyze(TwoPath(), input_size=(3, 8, 8), optimizer="adam").totals
    assert adam["optimizer_state_bytes"] == 2 * t["gradient_bytes"]
    assert adam["training_memory_bytes"] - t["training_memory_bytes"] == t["gradient_bytes"]


def test_macs_equal_flop_counter_on_hand_built_model(two_path) -> None:
    with torch.device("meta"):
        model = TwoPath().eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, 8, 8, device="meta"))
    assert two_path.totals["macs"] * 2 == counter.get_total_flops()


def test_receptive_field_takes_the_widest_path(two_path) -> None:
    assert two_path.row("conv1").receptive_field == 3
    assert two_path.row("branch3").receptive_field == 5
    assert next(r for r in two_path.layers if r.type == "add").receptive_field == 5
    assert two_path.row("branch5").receptive_field == 3 + 4 * 1 + 2  # on the 5-wide join
    cat = next(r for r in two_path.layers if r.type == "cat")
    assert cat.receptive_field == two_path.row("branch5").receptive_field == 9
    assert two_path.row("pool").receptive_field == 10 and two_path.row("pool").jump == 2
    assert two_path.totals["network_depth"] == 4  # conv1 → branch3 → branch5 → fc


def test_stacked_convolutions_match_the_recursion() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, stride=2, dilation=2, padding=1))
    rows = analyze(net, input_size=(1, 32, 32)).layers
    # r: 1 → 3 → 4 (j 2) → 4 + 2·2·2 = 12 (j 4); start 0.5 → 1.5 → 2.0 → 2.0 + (2 − 1)·2 = 4.0
    assert [(r.receptive_field, r.jump, r.start) for r in rows] == [(3, 1, 1.5), (4, 2, 2.0), (12, 4, 4.0)]


def test_json_schema_is_design_section_4(two_path) -> None:
    data = json.loads(two_path.to_json())
    assert {"model", "input_shape", "layers", "totals"} <= set(data)
    assert data["model"] == "TwoPath" and data["input_shape"] == [1, 3, 8, 8]
    for layer in data["layers"]:
        for key in (
            "name",
            "type",
            "output_shape",
            "params",
            "macs",
            "flops",
            "activations",
            "receptive_field",
            "jump",
        ):
            assert key in layer
        assert all(type(layer[k]) is int for k in ("params", "macs", "flops", "activations", "receptive_field", "jump"))
    for key in (
        "params",
        "trainable_params",
        "fixed_params",
        "macs",
        "flops",
        "activations",
        "activation_bytes",
        "param_bytes",
        "training_memory_bytes",
    ):
        assert type(data["totals"][key]) is int


def test_markdown_csv_and_rich_renderings(two_path) -> None:
    md = two_path.to_markdown()
    assert md.startswith("| layer | module path | spec |")
    assert "| conv1 | stem | 8 3×3 filters, stride 1, pad 1 |" in md  # paper name, PyTorch path
    rows = list(csv.DictReader(io.StringIO(two_path.to_csv())))
    assert len(rows) == len(two_path.layers) and int(rows[0]["macs"]) == two_path.row("conv1").macs
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    console.print(two_path.to_rich())
    assert "conv1" in console.file.getvalue()


def test_collapse_to_depth_keeps_the_totals() -> None:
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
    full = analyze(net, input_size=(3, 16, 16))
    collapsed = full.collapse(1)
    assert [r.name for r in collapsed.layers] == ["0", "1"]
    assert collapsed.layers[0].type == "Sequential"
    for key in ("params", "macs", "flops", "activations"):
        assert sum(getattr(r, key) for r in collapsed.layers) == sum(getattr(r, key) for r in full.layers)
    assert collapsed.layers[1].receptive_field == full.layers[-1].receptive_field == 5


def test_analyze_reads_no_weights_and_restores_the_mode() -> None:
    model = TwoPath().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(model, input_size=(3, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_dtype_sets_the_byte_counts() -> None:
    half = analyze(TwoPath(), input_size=(3, 8, 8), dtype=torch.float16)
    assert half.totals["activation_bytes"] == 2 * half.totals["activations"]
    assert half.totals["param_bytes"] == 2 * half.totals["params"]


def test_fast_meta_kernels_agree_with_the_real_ones() -> None:
    x = torch.empty(2, 6, 9, 7, device="meta")
    w = torch.empty(4, 3, 3, 2, device="meta")
    mean = torch.empty(6, device="meta")
    cases = [
        (torch.ops.aten.convolution.default, (x, w, None, [2, 1], [1, 0], [1, 2], False, [0, 0], 2)),
        (torch.ops.aten.cat.default, ([x, x[:, :2].contiguous()], 1)),
        (torch.ops.aten.native_batch_norm.default, (x, mean, mean, mean, mean, False, 0.1, 1e-5)),
        (torch.ops.aten._native_batch_norm_legit_no_training.default, (x, mean, mean, mean, mean, 0.1, 1e-5)),
        # F.linear's addmm: bias, input, weight.t() (a non-contiguous view)
        (
            torch.ops.aten.addmm.default,
            (mean[:5], torch.empty(3, 8, device="meta"), torch.empty(5, 8, device="meta").t()),
        ),
    ]
    for op, args in cases:
        fast, real = _FAST_META[op](*args), op(*args)
        fast, real = (fast, real) if isinstance(real, tuple) else ((fast,), (real,))
        assert [(t.shape, t.stride(), t.dtype) for t in fast] == [(t.shape, t.stride(), t.dtype) for t in real], op
    out = _fast_pointwise(torch.ops.aten.add.Tensor, (x, x), {})
    assert out.shape == x.shape and out is not x
    assert _fast_pointwise(torch.ops.aten.relu_.default, (x,), {}) is x


def test_fast_max_pool_shapes_equal_the_meta_kernel_including_ceil_mode_and_errors() -> None:
    # ATen's rule (pooling_output_shape_pad_lr): with ceil_mode a last window starting in the
    # right padding is dropped; padding over half the kernel is an error the real kernel raises.
    pool = _FAST_META[torch.ops.aten.max_pool2d_with_indices.default]
    checked = 0
    for side, kernel, stride, pad, dilation, ceil in itertools.product(
        (1, 2, 5, 6, 7, 13, 14), (1, 2, 3), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)
    ):
        x = torch.empty(1, 2, side, side + 1, device="meta")
        args = (x, [kernel, kernel], [stride, stride], [pad, pad], [dilation, dilation], ceil)
        try:
            real = torch.ops.aten.max_pool2d_with_indices.default(*args)
        except RuntimeError:
            assert pool(*args) is None, args  # declined: the real kernel raises its own error
            continue
        fast = pool(*args)
        assert fast is not None, args
        assert [(t.shape, t.stride(), t.dtype) for t in fast] == [(t.shape, t.stride(), t.dtype) for t in real], args
        checked += 1
    assert checked > 300


def test_too_small_input_names_the_layer_and_the_smallest_size() -> None:
    with pytest.raises(InputError, match=r"layer pool .* the smallest input that works is 3×2×2"):
        analyze(TwoPath(), input_size=(3, 1, 1))
    plain = nn.Sequential(nn.Conv2d(3, 4, 5), nn.MaxPool2d(2))
    with pytest.raises(InputError, match=r"smallest input that works is 3×6×6"):
        analyze(plain, input_size=(3, 5, 5))


def test_bad_arguments_raise_input_error() -> None:
    with pytest.raises(InputError, match="optimizer"):
        analyze(TwoPath(), input_size=(3, 8, 8), optimizer="rmsprop")
    # Any shape is a valid request; a 2-D image model given one says what it needs.
    with pytest.raises(InputError, match="needs a 4-D batch N×3×H×W"):
        analyze(TwoPath(), input_size=(8, 8))
    with pytest.raises(InputError, match="sequence of integers"):
        analyze(TwoPath(), input_size="3x8x8")
    with pytest.raises(InputError, match="unknown model"):
        analyze("no_such_net")


def test_cli_summary_formats_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    name = cnnatlas.list_models()[0]
    assert main(["summary", name, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == name and data["totals"]["macs"] == analyze(name).totals["macs"]
    assert main(["summary", name, "--format", "csv", "--depth", "1"]) == 0
    assert capsys.readouterr().out.startswith("name,type,output_shape,params,macs")
    assert main(["summary", "vgg61"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error: unknown model") and err.count("\n") == 1
    assert main(["summary", name, "--input", "3x224"]) == 2
    assert capsys.readouterr().err.startswith("cnnatlas: error:")


def test_cli_summary_too_small_input_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    name = next(n for n in cnnatlas.list_models() if cnnatlas.model_info(n).min_input_size > 2)
    info = cnnatlas.model_info(name)
    side = info.min_input_size - 1
    assert main(["summary", name, "--input", f"{info.input_size[0]}x{side}x{side}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "layer" in err
    assert f"smallest input that works is {info.input_size[0]}×{info.min_input_size}×{info.min_input_size}" in err


def test_cli_compare_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    names = cnnatlas.list_models()[:2]
    assert main(["compare", *names, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == names
    assert rows[0]["params"] == cnnatlas.model_info(names[0]).params
    assert main(["compare", *names, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| model | input | params | MACs |") and names[1] in out


def test_measure_reports_a_peak_next_to_the_estimate() -> None:
    from cnnatlas.analysis import measure_training_step

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
    estimate = analyze(model, input_size=(3, 32, 32), batch=4).totals["training_memory_bytes"]
    measured = measure_training_step(model, (4, 3, 32, 32), "momentum")
    # The estimate leaves out transient activation gradients and workspaces (docs/analysis.md).
    assert 0.5 * measured["peak_bytes"] < estimate <= 1.05 * measured["peak_bytes"]


def test_measure_leaves_stderr_clean() -> None:
    # the profiler's C++ back end writes straight to file descriptor 2, which capsys cannot see:
    # run the command in its own process, where nothing has started the profiler before
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "cnnatlas", "summary", "lenet5", "--measure", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["measured"]["peak_bytes"] > 0
