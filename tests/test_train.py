"""The trainer end to end on tiny subsets of the bundled MNIST sample (a few seconds each)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnatlas.base import AtlasModel
from cnnatlas.cli import main
from cnnatlas.data.augment import RandomShift
from cnnatlas.train import checkpoint as ck
from cnnatlas.train.run import load_run
from cnnatlas.train.trainer import FAULT_KILL_ENV, NonFiniteLossError, train

# A small, quick setting: lenet5_modern (no BN, no dropout) on 256 digits, batch 32 → 8 steps/epoch.
TINY = dict(limit_train=256, limit_test=128, batch_size=32, epochs=1, device="cpu")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "lenet"
    events: list[str] = []
    result = train("lenet5_modern", out=str(out), callback=lambda e, p: events.append(e), **TINY)
    assert result.global_step == 8 and result.epochs == 1
    assert events[0] == "start" and "step" in events and events.count("epoch") == 1
    return out


def test_run_directory_files(finished_run: Path) -> None:
    config = json.loads((finished_run / "config.json").read_text())
    assert config["model"]["name"] == "lenet5_modern" and config["recipe"]["name"] == "lenet5"
    assert config["adapter"]["pad"] == 2  # MNIST 28 → 32 as LeCun et al. 1998 §II.B
    assert config["global_batch"] == 32 and config["data"]["train_size"] == 256
    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and {"train_loss", "test_top1", "test_top5", "lr", "epoch_time_s"} <= set(rows[0])
    assert (finished_run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr")
    assert (finished_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(ck.list_checkpoints(finished_run)) == 1


def test_load_run_gives_the_trained_weights(finished_run: Path) -> None:
    loaded = load_run(finished_run)
    marker = ck.list_checkpoints(finished_run)[-1]
    saved = load_file(str(marker.with_name(marker.name.replace(".json", ".model.safetensors"))))
    assert not loaded.model.training
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, saved[key])
    assert loaded.adapter(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape == (2, 1, 32, 32)
    assert loaded.classes == tuple(str(i) for i in range(10))  # the sample's digit classes, in label order


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cnnatlas", *args], capture_output=True, text=True, timeout=120)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in-process (fast): exit code and stderr."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["lenet5_modern", "--lr", "-0.1"], "lr must be a positive"),
        (["lenet5_modern", "--batch-size", "0"], "batch_size must be a positive"),
        (["lenet5_modern", "--recipe", "nope"], "unknown recipe"),
        (["lenet5_modrn"], "unknown model"),
        (["lenet5_modern", "--data", "nope"], "nope"),
        (["lenet5_modern", "--set", "bogus=1"], "no field"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    code, err = _main(capsys, "train", *args, "--out", str(out), "--quiet")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnatlas: error:") and needle in lines[0], err
    assert not out.exists()


def test_resume_errors_leave_files_untouched(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree_digest(finished_run)
    # another architecture
    code, err = _main(capsys, "train", "lenet5", "--resume", str(finished_run), "--quiet")
    assert code == 2 and "not 'lenet5'" in err
    # a folder that is not a run
    code, err = _main(capsys, "train", "lenet5_modern", "--resume", str(tmp_path), "--quiet")
    assert code == 2 and "not a cnnatlas run directory" in err
    # an existing run is never overwritten by a new one
    code, err = _main(capsys, "train", "lenet5_modern", "--out", str(finished_run), "--quiet")
    assert code == 2 and "already holds a run" in err
    assert _tree_digest(finished_run) == before


def test_corrupt_checkpoint_is_refused(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    marker = ck.list_checkpoints(copy)[-1]
    tensors = marker.with_name(marker.name.replace(".json", ".model.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:-7] + b"garbage")
    before = _tree_digest(copy)
    code, err = _main(capsys, "train", "lenet5_modern", "--resume", str(copy), "--epochs", "2", "--quiet")
    assert code == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1
    assert _tree_digest(copy) == before


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    # 256 digits, batch 32 → 8 steps/epoch, 2 epochs, a checkpoint every 3 steps; lenet5 (paper)
    # with its random affine distortions, so data order, augmentation and optimiser state all have to resume exactly.
    common = [
        "lenet5",
        "--limit-train",
        "256",
        "--limit-test",
        "64",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--deterministic",
        "--device",
        "cpu",
        "--quiet",
        "--checkpoint-every-steps",
        "3",
    ]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = _cli("train", *common, "--out", str(straight))
    assert reference.returncode == 0, reference.stderr

    # killed right after step 10 (epoch 2, batch 2): the last checkpoint is step 9, mid-epoch
    crashed = subprocess.run(
        [sys.executable, "-m", "cnnatlas", "train", *common, "--out", str(killed)],
        capture_output=True,
        timeout=120,
        env={**os.environ, FAULT_KILL_ENV: "10"},
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    last = json.loads(ck.list_checkpoints(killed)[-1].read_text())
    assert last["global_step"] == 9 and last["step_in_epoch"] == 1

    resumed = _cli("train", "lenet5", "--resume", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    want = load_file(str(sorted((straight / "checkpoints").glob("*.model.safetensors"))[-1]))
    got = load_file(str(sorted((killed / "checkpoints").glob("*.model.safetensors"))[-1]))
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    rows_a = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]  # no batch skipped or repeated


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = AtlasModel.training_loss

    def poisoned(self, output, target, label_smoothing=0.0, temperature=1.0):  # noqa: ANN001 - the method's own signature
        calls["n"] += 1
        loss = real(self, output, target, label_smoothing, temperature)
        return loss * float("nan") if calls["n"] == 11 else loss  # step 11 of 16: epoch 2, batch 3

    monkeypatch.setattr(AtlasModel, "training_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="step 10"):
        train("lenet5_modern", out=str(out), **dict(TINY, epochs=2))
    diagnostic = json.loads((out / "diagnostic.json").read_text())
    assert diagnostic["step"] == 10 and diagnostic["loss"] == "nan"
    marks = ck.list_checkpoints(out)
    assert [int(m.name[5:14]) for m in marks] == [8]  # the epoch-1 checkpoint, nothing after
    ck.load_latest_checkpoint(out)


def test_recipe_logit_temperature_reaches_the_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    real = AtlasModel.training_loss

    def spy(self, output, target, label_smoothing=0.0, temperature=1.0):  # noqa: ANN001 - the method's own signature
        seen.append(temperature)
        return real(self, output, target, label_smoothing, temperature)

    monkeypatch.setattr(AtlasModel, "training_loss", spy)
    result = train("lenet5_modern", out=str(tmp_path / "t"), overrides={"logit_temperature": "8"}, **TINY)
    assert seen and set(seen) == {8.0}
    assert json.loads((result.run_dir / "config.json").read_text())["recipe"]["logit_temperature"] == 8.0


def test_random_shift_is_a_translation() -> None:
    images = torch.zeros(3, 1, 8, 8)
    images[:, :, 4, 4] = 1.0
    shifted = RandomShift(2)(images, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and torch.all(shifted.sum(dim=(1, 2, 3)) == 1)
