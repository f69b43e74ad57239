"""Export to ONNX, TorchScript and safetensors, verified at export time; bad input leaves no file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.errors import CheckpointError, InputError

onnx = pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")

from cnnatlas.export import ModelSpec, export, export_onnx, load_exported  # noqa: E402

# The networks whose peculiarities an exporter must get through, at small inputs where the
# network allows one (min_input_size from the registry): LeNet-5's C3 connection table and
# fixed-bitmap RBF output, AlexNet-2012's LRN and two towers (fixed 227×227 by its FC layers),
# GoogLeNet's concatenated branches, DenseNet-121's dense concatenations, SqueezeNet's bypass
# additions, MobileNet v1's depthwise convolutions.
REPRESENTATIVE = [
    ("lenet5", (1, 32, 32)),
    ("alexnet_2012", (3, 227, 227)),
    ("googlenet", (3, 64, 64)),
    ("densenet121", (3, 32, 32)),
    ("squeezenet1_0_bypass", (3, 64, 64)),
    ("mobilenet_v1_100", (3, 32, 32)),
]


def _spec(name: str, size: tuple[int, int, int]) -> ModelSpec:
    return ModelSpec(name, {}, (), size)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return cnnatlas.create_model(name).eval()


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=[n for n, _ in REPRESENTATIVE])
def test_representative_models_export_to_onnx_and_run_in_onnxruntime(
    name: str, size: tuple[int, int, int], tmp_path: Path
) -> None:
    model = _model(name)
    path = tmp_path / f"{name}.onnx"
    report = export(model, _spec(name, size), path, "onnx", dynamic_batch=True)
    assert path.is_file() and report.path == path
    assert report.inputs == [("input", ["batch", *size])]
    assert report.outputs == [("logits", ["batch", model.num_classes])]
    assert report.max_relative_error is not None and report.max_relative_error <= 1e-4
    # the file alone, read back: same logits as PyTorch at a batch size it was not traced at
    onnx.checker.check_model(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(x)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", cnnatlas.list_models())
def test_every_registered_model_exports_and_verifies(
    name: str, tmp_path: Path, calibrate_batch_norm, deepest_networks
) -> None:
    info = cnnatlas.model_info(name)
    model, bound = _model(name), 1e-4
    if name in deepest_networks:
        # a fresh network's statistics overflow float32 over 600 blocks: use real ones; and over a
        # thousand layers float32 rounding alone moves the logits ~2e-3 (cnnatlas.fast.agreement_with_eager)
        model, bound = calibrate_batch_norm(model, torch.randn(4, *info.input_size)), 1e-2
    report = export(model, _spec(name, info.input_size), tmp_path / "m.onnx", "onnx")
    assert report.max_relative_error is not None and report.max_relative_error <= bound


def test_folded_onnx_export_matches_the_unfolded_network(tmp_path: Path) -> None:
    model = _model("resnet20")
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # statistics as after training, so folding is really tested
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    path = tmp_path / "r.onnx"
    report = export(model, _spec("resnet20", (3, 32, 32)), path, "onnx", fold_bn=True)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert report.max_relative_error <= 1e-4


@pytest.mark.parametrize("fold_bn", [False, True], ids=["as-is", "folded"])
def test_overlapping_adaptive_pool_exports_and_leaves_the_callers_network_alone(fold_bn: bool, tmp_path: Path) -> None:
    # 7×7 → 3×3 (torchvision's VGG head fed a small input): the regions overlap, which PyTorch's
    # exporter cannot translate, so the export replaces the pool with an exact slice-and-mean.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(3)).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    x = torch.randn(2, 3, 7, 7)
    path = export_onnx(model, tmp_path / "pool.onnx", x, fold_bn=fold_bn)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x)
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    assert got.shape == (2, 4, 3, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d]
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in before.items())


def test_torchscript_export_reproduces_eager(tmp_path: Path) -> None:
    path = tmp_path / "lenet5.pt"
    report = export(_model("lenet5"), _spec("lenet5", (1, 32, 32)), path, "torchscript")
    assert path.is_file() and report.max_relative_error <= 1e-4


def test_safetensors_export_rebuilds_the_network_from_its_metadata(tmp_path: Path) -> None:
    model = cnnatlas.create_model("resnet20", num_classes=7)
    spec = ModelSpec("resnet20", {"num_classes": 7}, tuple("abcdefg"), (3, 32, 32))
    path = tmp_path / "r.safetensors"
    export(model, spec, path, "safetensors")
    rebuilt, read_spec = load_exported(path)
    assert read_spec == spec and rebuilt.num_classes == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    plain = tmp_path / "plain.safetensors"
    cnnatlas.save_weights(model, plain)
    with pytest.raises(CheckpointError, match="no cnnatlas model metadata"):
        load_exported(plain)


def test_an_unsupported_operator_is_named(tmp_path: Path) -> None:
    class Spectrum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(x).abs().flatten(1)

    with pytest.raises(InputError, match="aten::fft_fft2"):
        export_onnx(Spectrum(), tmp_path / "s.onnx", torch.randn(1, 1, 4, 4))


def test_a_failed_verification_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnatlas import export as export_module

    def disagree(model: nn.Module, x: torch.Tensor, candidate: torch.Tensor, what: str) -> float:
        raise InputError(f"{what} disagrees with PyTorch")

    monkeypatch.setattr(export_module, "_check_agreement", disagree)
    path = tmp_path / "lenet5.onnx"
    with pytest.raises(InputError, match="disagrees"):
        export(_model("lenet5"), _spec("lenet5", (1, 32, 32)), path, "onnx")
    assert list(tmp_path.iterdir()) == []


# -- the command -------------------------------------------------------------------------------
def _cli(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from cnnatlas.cli import main

    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def _one_line_error(result: tuple[int, str, str], fragment: str) -> None:
    code, out, err = result
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1 and fragment in err, err


def test_export_command_prints_names_and_shapes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "l.onnx"
    code, out, err = _cli(capfd, "export", "lenet5", "--format", "onnx", "--out", str(out_file), "--dynamic-batch")
    assert code == 0, err
    assert out_file.is_file()
    assert "input  input: [batch, 1, 32, 32]" in out and "output logits: [batch, 10]" in out
    assert "verified: onnx.checker" in out


def _write_run(run: Path, model: nn.Module | None) -> None:
    """A run folder as the trainer leaves it: config.json, and a committed checkpoint of
    ``model`` unless it is None."""
    from cnnatlas.train.adapt import InputAdapter
    from cnnatlas.train.checkpoint import save_checkpoint

    run.mkdir()
    config = {
        "model": {"name": "resnet20", "options": {"num_classes": 4}},
        "data": {"name": "synthetic", "image_size": [3, 32, 32], "classes": ["a", "b", "c", "d"]},
        "adapter": InputAdapter(in_chans=3, out_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3).to_dict(),
    }
    (run / "config.json").write_text(json.dumps(config))
    if model is not None:
        save_checkpoint(
            run,
            step=1,
            model_state=model.state_dict(),
            optimizer_state={"state": {}, "param_groups": []},
            state={"model_name": "resnet20"},
        )


def test_export_command_from_a_run_directory(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    model = cnnatlas.create_model("resnet20", num_classes=4)
    run = tmp_path / "run"
    _write_run(run, model)
    out_file = tmp_path / "r.safetensors"
    code, out, err = _cli(capfd, "export", str(run), "--format", "safetensors", "--out", str(out_file))
    assert code == 0, err
    rebuilt, spec = load_exported(out_file)
    assert spec.classes == ("a", "b", "c", "d") and spec.input_size == (3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    # writing into the run folder takes its lock: not while another process writes there
    from cnnatlas.train.lock import lock_run_dir

    with lock_run_dir(run):
        _one_line_error(
            _cli(capfd, "export", str(run), "--format", "safetensors", "--out", str(run / "m.safetensors")), "in use"
        )
    assert not (run / "m.safetensors").exists()
    code, _, err = _cli(capfd, "export", str(run), "--format", "safetensors", "--out", str(run / "m.safetensors"))
    assert code == 0 and (run / "m.safetensors").is_file(), err


def test_export_command_errors_are_one_line_and_leave_no_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _one_line_error(_cli(capfd, "export", "lenet5", "--format", "tflite"), "invalid choice")
    _one_line_error(_cli(capfd, "export", "lenett5", "--format", "onnx"), "did you mean lenet5")
    missing = tmp_path / "no" / "such" / "folder" / "x.onnx"
    _one_line_error(_cli(capfd, "export", "lenet5", "--format", "onnx", "--out", str(missing)), "does not exist")
    run = tmp_path / "run_without_weights"
    _write_run(run, None)
    _one_line_error(
        _cli(capfd, "export", str(run), "--format", "onnx", "--out", str(tmp_path / "x.onnx")), "checkpoint"
    )
    _one_line_error(
        _cli(capfd, "export", "lenet5", "--format", "safetensors", "--fold-bn", "--out", str(tmp_path / "y")),
        "--fold-bn",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_without_weights"]
