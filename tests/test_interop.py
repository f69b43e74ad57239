"""Every registered model works with PyTorch's graph tools: torch.fx.symbolic_trace,
torchvision's create_feature_extractor, torch.export and torch.compile (docs/models/README.md
lists what each family does under them)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
from torchvision.models.feature_extraction import create_feature_extractor

import cnnatlas
from cnnatlas.base import AtlasModel
from cnnatlas.errors import InputError
from cnnatlas.registry import create_meta_model

ALL_MODELS = cnnatlas.list_models()
# The three deepest networks take seconds each to build and trace; they run under -m slow.
DEEPEST = {"resnet1202", "preact_resnet1001", "densenet264"}
# One network per kind of forward: RBF output and partial C3, towers with LRN, mlpconv,
# depthwise separable, residual, fire bypasses.
REPRESENTATIVE = ["lenet5", "alexnet_2012", "mobilenet_v1_025", "nin_cifar", "resnet20", "squeezenet1_0_complex_bypass"]
# Whose training forward differs from evaluation beyond dropout and BN: auxiliary heads,
# LeNet-5's dense C3, stochastic depth, drop-path.
TRAINING_PATHS = ["googlenet", "lenet5", "resnet110_sd", "fractalnet20"]


def _small_input(model: AtlasModel, batch: int = 2) -> torch.Tensor:
    side = max(model.min_input_size, 32)
    side = min(side, model.max_input_size) if model.max_input_size else side
    return torch.randn(batch, model.in_chans, side, side)


def _trace_on_meta(name: str, training: bool) -> None:
    info = cnnatlas.model_info(name)
    traced = torch.fx.symbolic_trace(create_meta_model(name).train(training))
    out = traced(torch.empty(2, *info.input_size, device="meta"))
    assert AtlasModel.main_logits(out).shape == (2, info.num_classes)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n not in DEEPEST])
def test_symbolic_trace_in_eval_mode(name: str) -> None:
    _trace_on_meta(name, training=False)


@pytest.mark.parametrize("name", TRAINING_PATHS)
def test_symbolic_trace_in_training_mode(name: str) -> None:
    # create_feature_extractor traces both modes.
    _trace_on_meta(name, training=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_symbolic_trace_every_model_in_both_modes(name: str) -> None:
    _trace_on_meta(name, training=False)
    _trace_on_meta(name, training=True)


@pytest.mark.parametrize("name", ["lenet5", "alexnet_2012", "googlenet", "resnet20", "fractalnet20"])
def test_traced_graph_computes_what_the_model_computes(name: str) -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model(name, num_classes=5, **({"drop_path_rate": 0.5} if name == "resnet20" else {}))
    model.eval()
    x = _small_input(model) if name != "googlenet" else torch.randn(1, 3, 64, 64)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-5)


def test_traced_stochastic_depth_draws_anew_on_every_call() -> None:
    # A graph that froze the draw made while tracing would give one output for every call.
    torch.manual_seed(0)
    model = cnnatlas.create_model("resnet20", drop_path_rate=0.5).train()
    traced = torch.fx.symbolic_trace(model)
    assert "survival_draw" in traced.code
    x = torch.randn(2, 3, 16, 16)
    outputs = {tuple(traced(x).flatten().tolist()) for _ in range(8)}
    assert len(outputs) > 1


def test_traced_fractalnet_global_drop_path_runs_one_column() -> None:
    # Larsson et al. 2017 §3.1: global drop-path keeps one column for the whole network. With
    # global_drop_ratio=1 every call of the traced training graph must equal one column alone.
    torch.manual_seed(0)
    small = {"widths": (8, 8, 8, 8, 8), "dropout": (0.0,) * 5}
    model = cnnatlas.create_model("fractalnet20", global_drop_ratio=1.0, **small).train()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    columns = []
    for column in (1, 2, 3):
        model.set_column(column)
        columns.append(model(x))
    model.set_column(None)
    for _ in range(4):
        out = traced(x)
        assert sum(torch.allclose(out, c, atol=1e-5) for c in columns) == 1


def test_create_feature_extractor_returns_the_requested_maps() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("resnet20").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision notes train/eval node differences
        extractor = create_feature_extractor(model, return_nodes={"layer2": "c3", "layer3": "c4"})
    x = torch.randn(2, 3, 32, 32)
    maps = extractor(x)
    assert maps["c3"].shape == (2, 32, 16, 16) and maps["c4"].shape == (2, 64, 8, 8)
    assert torch.allclose(maps["c4"], model.forward_features(x), atol=1e-6)


def test_eager_mode_still_names_the_layer_that_collapses() -> None:
    model = cnnatlas.create_model("alexnet_2012")
    with pytest.raises(InputError, match="needs 3-channel input"):
        model(torch.randn(1, 4, 227, 227))
    with pytest.raises(InputError, match=r"alexnet_2012 needs input between 227×227 .* got 200×200: layer fc6"):
        model(torch.randn(1, 3, 200, 200))


def _export_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model(name).eval()
    x = _small_input(model, batch=1)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_torch_export_matches_eager(name: str) -> None:
    _export_matches_eager(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n not in REPRESENTATIVE])
def test_torch_export_every_model(name: str) -> None:
    info = cnnatlas.model_info(name)
    program = torch.export.export(create_meta_model(name).eval(), (torch.empty(1, *info.input_size, device="meta"),))
    assert program.graph_signature.user_outputs


def test_export_still_rejects_bad_input() -> None:
    # torch.export traces with shapes known, so the friendly check runs (and raises) there too.
    model = cnnatlas.create_model("lenet5").eval()
    with pytest.raises(InputError, match="lenet5 needs input 32×32"):
        torch.export.export(model, (torch.randn(1, 1, 28, 28),))


@pytest.mark.slow
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["resnet110_sd", "fractalnet20"])
def test_compile_has_no_graph_break_even_with_random_training_paths(name: str, training: bool) -> None:
    torch._dynamo.reset()
    model = cnnatlas.create_model(name).train(training)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
