"""What the trainer measures and what it leaves behind: a validation split carved from the
training split (plateau schedules watch it, the test split is a result only), one loss quantity
on every split, the post-step model hook, and the process-wide torch settings restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnatlas.base import AtlasModel
from cnnatlas.cli import main
from cnnatlas.data import load_dataset
from cnnatlas.data.validation import carve_validation, subset, validation_indices
from cnnatlas.errors import InputError
from cnnatlas.registry import ModelInfo, Paper, register_model
from cnnatlas.train.run import load_run
from cnnatlas.train.trainer import LRSchedule, train

# lenet5_modern (no BN, no dropout) with the lenet5 recipe on 64 of the sample's digits:
# batch 32 → 2 steps per epoch; 64 validation and 64 test digits.
TINY = dict(limit_train=64, limit_test=64, batch_size=32, device="cpu")


def test_validation_indices_are_a_seeded_partition() -> None:
    train_ids, val_ids = validation_indices(1000, 0.125, seed=0)
    assert len(val_ids) == 125 and len(train_ids) == 875
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(1000))
    again_train, again_val = validation_indices(1000, 0.125, seed=0)
    assert torch.equal(again_val, val_ids) and torch.equal(again_train, train_ids)
    assert not torch.equal(validation_indices(1000, 0.125, seed=1)[1], val_ids)
    assert val_ids.tolist() != list(range(125))  # drawn at random, not the first images


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan"), 0.0001])
def test_bad_validation_fractions_are_input_errors(fraction: float) -> None:
    with pytest.raises(InputError, match="val-fraction"):
        validation_indices(1000, fraction, seed=0)


def test_carve_of_the_bundled_sample_is_fixed_and_disjoint() -> None:
    sample = load_dataset("mnist-sample")
    train_part, val_part = carve_validation(sample, 0.125, seed=0)
    assert (len(train_part), len(val_part), len(sample)) == (7000, 1000, 8000)
    assert (train_part.split, val_part.split) == ("train", "val")
    _, val_ids = validation_indices(8000, 0.125, seed=0)
    assert torch.equal(val_part.images, sample.images[val_ids])
    assert carve_validation(sample, 0.0, seed=0) == (sample, None)


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float | None]]:
    """A 2-epoch run, with the scores its plateau schedule was given."""
    scores: list[float | None] = []
    real = LRSchedule.epoch_end

    def spy(self: LRSchedule, score: float | None) -> None:
        scores.append(score)
        real(self, score)

    out = tmp_path_factory.mktemp("runs") / "val"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LRSchedule, "epoch_end", spy)
        train("lenet5_modern", out=str(out), epochs=2, overrides={"schedule": "plateau"}, **TINY)
    return out, scores


def test_config_records_the_validation_split(two_epoch_run: tuple[Path, list[float | None]]) -> None:
    out, _ = two_epoch_run
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["validation"]["fraction"] == 0.125 and data["validation"]["seed"] == 0  # the lenet5 recipe's
    assert data["validation"]["size"] == 64 and data["train_size"] == 64  # both after --limit-*


def test_plateau_watches_validation_and_test_is_only_the_result(two_epoch_run: tuple[Path, list[float | None]]) -> None:
    out, scores = two_epoch_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["val_top1"] is not None for r in rows)
    assert rows[0]["test_top1"] is None and rows[1]["test_top1"] is not None
    assert scores == [r["val_top1"] for r in rows]
    assert json.loads((out / "config.json").read_text())["metrics"]["plateau_watches"] == "val_top1"


def test_evaluate_split_val_rebuilds_the_runs_validation_images(
    two_epoch_run: tuple[Path, list[float | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = two_epoch_run
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "val", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val" and result["n"] == 1000  # the sample's 1,000 validation digits
    # The same images as the run's (its first 64 of them, --limit-test) give its last val_top1.
    run = load_run(out)
    _, val_part = carve_validation(load_dataset("mnist-sample"), 0.125, seed=0)
    first64 = subset(val_part, torch.arange(64), "val")
    from cnnatlas.train.evaluate import evaluate

    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert evaluate(run.model, first64, adapter=run.adapter)["top1"] == last["val_top1"]


def test_evaluate_split_val_without_a_validation_split_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "noval"
    train("lenet5_modern", out=str(out), epochs=1, val_fraction=0.0, **TINY)
    assert json.loads((out / "config.json").read_text())["metrics"]["plateau_watches"] == "train_top1"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "val"]) == 2
    assert "no validation images" in capsys.readouterr().err


def test_train_loss_is_the_evaluation_loss_and_the_objective_is_separate(tmp_path: Path) -> None:
    # A learning rate of 1e-12 leaves the weights as they were, and lenet5_modern has no dropout
    # or batch norm, so the epoch's train_loss must equal the evaluation loss on the same digits.
    out = tmp_path / "loss"
    options = dict(TINY, limit_train=64, epochs=1, lr=1e-12)
    train("lenet5_modern", out=str(out), overrides={"logit_temperature": 8.0, "augment": "none"}, **options)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    run = load_run(out)
    train_part, _ = carve_validation(load_dataset("mnist-sample"), 0.125, seed=0)
    images = run.adapter(train_part.images[:64])
    with torch.no_grad():
        logits = run.model(images)
    labels = train_part.labels[:64]
    assert row["train_loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    assert row["train_objective"] == pytest.approx(float(F.cross_entropy(logits / 8, labels)), rel=1e-4)
    assert "temperature 1" in json.loads((out / "config.json").read_text())["metrics"]["loss"]


class _Counting(AtlasModel):
    """A linear classifier that counts the trainer's post-step calls."""

    def __init__(self, *, num_classes: int, in_chans: int) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.fc = torch.nn.Linear(in_chans * 8 * 8, num_classes)
        self.steps_seen = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def after_optimizer_step(self) -> None:
        self.steps_seen += 1


def test_the_post_step_hook_runs_after_every_optimiser_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paper = Paper("A. Author", "A test paper", 2000, "Nowhere")
    register_model(ModelInfo("tiny_hook_test", "test", paper, (3, 8, 8), "none", 2, default_recipe="lenet5"), _Counting)
    built: list[_Counting] = []
    real_init = _Counting.__init__

    def keep(self: _Counting, **kwargs: int) -> None:
        real_init(self, **kwargs)
        built.append(self)

    monkeypatch.setattr(_Counting, "__init__", keep)
    data = {"num_samples": 40, "image_size": "3x8x8", "num_classes": 2}
    result = train("tiny_hook_test", out=str(tmp_path / "hook"), data="synthetic", data_options=data, epochs=3, **TINY)
    assert result.global_step == 3 and built[-1].steps_seen == 3  # 35 training images, batch 32, 3 epochs


def test_train_restores_the_process_wide_torch_settings(tmp_path: Path) -> None:
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_benchmark = torch.backends.cudnn.benchmark
    try:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        torch.manual_seed(1234)
        expected = torch.rand(3)
        torch.manual_seed(1234)
        train("lenet5_modern", out=str(tmp_path / "det"), epochs=1, deterministic=True, **TINY)
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is True
        assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.backends.cudnn.benchmark = was_benchmark
