"""train --init-from / --freeze and `cnnatlas features` on tiny runs of the experiment nets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cnnatlas
from cnnatlas.cli import main
from cnnatlas.errors import CheckpointError, InputError
from cnnatlas.features import feature_extractor, layer_names
from cnnatlas.train.checkpoint import load_latest_checkpoint
from cnnatlas.train.trainer import train
from cnnatlas.train.transfer import freeze, init_from

TINY = dict(
    data="cluttered-mnist",
    data_options={"train_size": 64, "canvas": 28, "clutter": 0},
    limit_test=32,
    batch_size=32,
    epochs=1,
    device="cpu",
)


@pytest.fixture(scope="module")
def shallow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("transfer") / "shallow"
    train("mini_vgg", out=str(out), model_options={"kernels": (3,)}, **TINY)
    return out


def test_init_from_copies_matching_tensors_and_lists_the_rest(shallow_run: Path) -> None:
    deep = cnnatlas.create_model("mini_vgg", num_classes=10, in_chans=1, kernels=(3, 3))
    report = init_from(deep, shallow_run, exclude="head.fc")
    source = load_latest_checkpoint(shallow_run, with_optimizer=False).model_state
    assert "stages.0.conv1.conv.weight" in report.copied
    assert torch.equal(deep.state_dict()["stages.0.conv1.conv.weight"], source["stages.0.conv1.conv.weight"])
    assert report.left["stages.0.conv2.conv.weight"] == "not in the source"
    assert report.left["head.fc.weight"] == "excluded"
    # stage 2's first conv sees 8 channels in both nets, but its input comes from a 3×3 conv in
    # both, so it matches; nothing of the model is silently dropped from the listing
    assert set(report.copied) | set(report.left) == set(deep.state_dict())


def test_init_from_refuses_a_source_with_nothing_in_common(shallow_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(CheckpointError, match="no tensor matches"):
        init_from(cnnatlas.create_model("lenet5"), shallow_run)
    code = main(["train", "lenet5", "--init-from", str(shallow_run), "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no tensor matches" in err
    assert not (tmp_path / "x").exists()


def test_freeze_keeps_parameters_fixed_through_training(shallow_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    train(
        "mini_vgg",
        out=str(out),
        model_options={"kernels": (3,)},
        init_from=str(shallow_run),
        init_exclude="head.fc",
        freeze="stages,head.fc1,head.fc2",
        **TINY,
    )
    before = load_latest_checkpoint(shallow_run, with_optimizer=False).model_state
    after = load_latest_checkpoint(out, with_optimizer=False).model_state
    assert torch.equal(before["stages.1.conv1.conv.weight"], after["stages.1.conv1.conv.weight"])
    assert torch.equal(before["head.fc1.weight"], after["head.fc1.weight"])
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])  # the one trained layer
    with pytest.raises(InputError, match="matches no parameter"):
        freeze(cnnatlas.create_model("mini_vgg"), "backbone.*")


def test_features_of_a_named_layer_and_an_unknown_layer(shallow_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "f.safetensors"
    assert main(["features", str(shallow_run), "--layer", "head.fc1", "--limit", "20", "--out", str(out)]) == 0
    saved = load_file(str(out))
    assert saved["features"].shape == (20, 64) and saved["labels"].shape == (20,)  # head_width 64
    code = main(["features", str(shallow_run), "--layer", "fc7"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "valid layers:" in err and "head.fc1" in err


def test_feature_extractor_matches_the_forward_pass() -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model("mini_vgg", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 40, 40)
    assert "stages.2.pool" in layer_names(model)
    with torch.no_grad():
        logits = feature_extractor(model, "head.fc")(x)["head.fc"]
        assert torch.allclose(logits, model(x))
    with pytest.raises(InputError):  # the input check is back after tracing
        model(torch.randn(2, 3, 40, 40))
