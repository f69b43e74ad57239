"""Trainer paths besides the default one: image folders, --amp, --compile, --no-channels-last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnatlas.base import AtlasModel
from cnnatlas.data.augment import FolderSampleTransform
from cnnatlas.train.recipes import get_recipe
from cnnatlas.train.trainer import TrainOptions, _load_data, train

# resnet20 (He et al. 2015 §4.2) on 3-channel data, one epoch of two batches of 8.
SMALL = dict(batch_size=8, epochs=1, device="cpu", num_workers=0)


def _image_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (40, 48)) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 2)):
        for label in ("ant", "bee"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "recipe, largest_side",
    [
        ("vgg", 512),  # Simonyan & Zisserman 2014 §3.1: S ∈ [256, 512]
        ("resnet_imagenet", 480),  # He et al. 2015 §3.4: shorter side ∈ [256, 480]
        ("alexnet2012", 256),  # Krizhevsky et al. 2012 §2: 256×256 images
    ],
)
def test_image_folders_are_decoded_at_the_largest_side_the_augmentation_rescales_to(
    tmp_path: Path, recipe: str, largest_side: int
) -> None:
    root = _image_folder(tmp_path, per_class=30)
    train_set, val_set, test_set = _load_data("imagefolder", TrainOptions(root=str(root)), get_recipe(recipe))
    assert isinstance(train_set.transform, FolderSampleTransform) and train_set.transform.size == largest_side
    image, _ = train_set[0]
    assert tuple(image.shape) == (3, largest_side, largest_side)
    # The held-out splits keep the centre-crop protocol: 256 for a 224 network.
    assert val_set.transform.size == test_set.transform.size == 256
    assert len(train_set) + len(val_set) == 60 and len(val_set) == 2  # the recipe's 4 % carve


def test_training_on_an_image_folder(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "data")
    result = train(
        "resnet20",
        out=str(tmp_path / "run"),
        data="imagefolder",
        root=str(root),
        overrides={"image_size": 32},
        **SMALL,
    )
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["data"]["classes"] == ["ant", "bee"] and config["data"]["train_size"] == 16
    assert result.global_step == 2 and result.final["test_top1"] is not None
    assert result.final["test_loss"] > 0 and np.isfinite(result.final["train_loss"])


def _record_inputs(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The batches every model's forward receives (through AtlasModel.check_input)."""
    seen: list[torch.Tensor] = []
    real = AtlasModel.check_input

    def spy(self: AtlasModel, x: torch.Tensor) -> None:
        if self.training:
            seen.append(x)
        real(self, x)

    monkeypatch.setattr(AtlasModel, "check_input", spy)
    return seen


SYNTHETIC = dict(data="synthetic", data_options={"num_samples": 16, "image_size": "3x32x32", "num_classes": 4})


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_is_the_default_and_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels_last: bool
) -> None:
    seen = _record_inputs(monkeypatch)
    result = train("resnet20", out=str(tmp_path / "run"), channels_last=channels_last, **SYNTHETIC, **SMALL)
    assert len(seen) == result.global_step == 2
    for x in seen:  # a 3-channel NHWC batch is not NCHW-contiguous, and the reverse
        assert x.is_contiguous(memory_format=torch.channels_last) is channels_last
        assert x.is_contiguous() is not channels_last
    assert json.loads((result.run_dir / "config.json").read_text())["channels_last"] is channels_last


def test_amp_runs_the_forward_pass_in_bfloat16_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dtypes: list[torch.dtype] = []
    real = AtlasModel.training_loss

    def spy(self: AtlasModel, output: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        dtypes.append(output.dtype)
        return real(self, output, *args, **kwargs)

    monkeypatch.setattr(AtlasModel, "training_loss", spy)
    result = train("resnet20", out=str(tmp_path / "run"), amp=True, **SYNTHETIC, **SMALL)
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in result_model_parameters(result.run_dir))
    assert np.isfinite(result.final["train_loss"])


def result_model_parameters(run_dir: Path) -> list[torch.Tensor]:
    from cnnatlas.train.run import load_run

    return list(load_run(run_dir).model.parameters())


@pytest.mark.slow  # inductor compiles C++ kernels: tens of seconds on 2 cores
def test_compile_trains_the_same_as_eager(tmp_path: Path) -> None:
    options = dict(SYNTHETIC, **SMALL, deterministic=True, channels_last=False)
    eager = train("lenet5_modern", out=str(tmp_path / "eager"), **{**options, "data_options": _gray(options)})
    compiled = train(
        "lenet5_modern", out=str(tmp_path / "compiled"), compile=True, **{**options, "data_options": _gray(options)}
    )
    assert json.loads((compiled.run_dir / "config.json").read_text())["compile"] is True
    assert compiled.final["train_loss"] == pytest.approx(eager.final["train_loss"], rel=1e-4)
    for a, b in zip(result_model_parameters(eager.run_dir), result_model_parameters(compiled.run_dir)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _gray(options: dict) -> dict:
    return dict(options["data_options"], image_size="1x32x32")


def test_compile_wraps_the_forward_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast check of the --compile path: the trainer hands its model to torch.compile and
    # trains through what comes back (the real compilation is the slow test above).
    compiled: list[torch.nn.Module] = []
    calls: list[int] = []

    def fake_compile(module: torch.nn.Module, **kwargs: object) -> torch.nn.Module:
        compiled.append(module)

        def forward(x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return module(x)

        return forward  # type: ignore[return-value]

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = train("resnet20", out=str(tmp_path / "run"), compile=True, **SYNTHETIC, **SMALL)
    assert len(compiled) == 1 and compiled[0].model_name == "resnet20"
    assert len(calls) == result.global_step == 2
