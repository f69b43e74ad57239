"""Run-folder safety: only the run's own files are pruned, foreign folders are refused, one
writer at a time, no dead-end folders, stale temporaries cleaned, umask respected, checkpoint
fallback and the checks on what a state file names."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnatlas.cli import main
from cnnatlas.errors import CheckpointError
from cnnatlas.train import checkpoint as ck
from cnnatlas.train.lock import lock_run_dir
from cnnatlas.train.run import load_run
from cnnatlas.train.trainer import train

# lenet5_modern on 64 digits, batch 32: 2 steps per epoch, a second or two per run.
TINY = dict(limit_train=64, limit_test=32, batch_size=32, epochs=1, device="cpu", num_workers=0)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cnnatlas: error:"), err
    assert needle in lines[0], err


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    train("lenet5_modern", out=str(out), checkpoint_every_steps=1, **dict(TINY, epochs=2))
    return out


# -- --out must be new, empty, or a run ------------------------------------------------------------
def test_out_at_a_foreign_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "my_model.pt").write_bytes(b"mine")
    code, err = _main(capsys, "train", "lenet5_modern", "--out", str(out), "--limit-train", "64", "--quiet")
    _one_line_error(code, err, "not empty and not a cnnatlas run")
    assert (out / "checkpoints" / "my_model.pt").read_bytes() == b"mine"
    assert sorted(p.name for p in out.rglob("*")) == ["checkpoints", "my_model.pt"]


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_or_is_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "run"
    code, err = _main(capsys, "train", "lenet5_modern", "--out", str(out), "--limit-train", "64", "--quiet")
    _one_line_error(code, err, "file")
    assert blocker.read_text() == "x"


# -- one writer per run ----------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with lock_run_dir(finished):
        code, err = _main(capsys, "train", "lenet5_modern", "--resume", str(finished), "--epochs", "3", "--quiet")
        _one_line_error(code, err, f"in use by another cnnatlas process (pid {os.getpid()})")
        assert load_run(finished).global_step == 4  # readers need no lock
    with lock_run_dir(finished):  # released by the failed writer and by us
        pass


# -- no dead-end folders ---------------------------------------------------------------------------
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(finished: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead"
    dead.mkdir()
    shutil.copy(finished / "config.json", dead / "config.json")  # what a kill before step 1 leaves
    result = train("lenet5_modern", resume=str(dead))
    assert result.global_step == 4
    want = load_run(finished).model.state_dict()
    got = load_run(dead).model.state_dict()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_invalid_options_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--workers", "-1"], ["--set", "decay_every_epochs=nan"], ["--set", "milestones=inf"]):
        out = tmp_path / "never"
        code, err = _main(capsys, "train", "lenet5_modern", "--out", str(out), "--quiet", *extra)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_time_based_checkpoints(tmp_path: Path) -> None:
    saved: list[int] = []
    train(
        "lenet5_modern",
        out=str(tmp_path / "t"),
        checkpoint_every_minutes=1e-9,  # due after every step
        callback=lambda event, payload: saved.append(payload["global_step"]) if event == "checkpoint" else None,
        **TINY,
    )
    assert saved == [1, 2]


# -- stale temporaries, umask --------------------------------------------------------------------
def test_stale_temporaries_are_cleaned_on_resume(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    stale = run / ck.CHECKPOINT_DIR / ".tmp-step-000000005.model.safetensors.0123abcd"
    stale.write_bytes(b"\0" * 1000)
    foreign = run / ck.CHECKPOINT_DIR / ".tmp-mine"
    foreign.write_bytes(b"mine")
    train("lenet5_modern", resume=str(run), epochs=3)
    assert not stale.exists() and foreign.read_bytes() == b"mine"


def test_saving_streams_without_copying_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clone(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("save_checkpoint copied a tensor whole")

    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    monkeypatch.setattr(torch.Tensor, "clone", no_clone)
    marker = ck.save_checkpoint(
        tmp_path, step=1, model_state=model.state_dict(), optimizer_state=opt.state_dict(), state={"model_name": "t"}
    )
    monkeypatch.undo()
    loaded = ck.load_checkpoint(marker)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model_state[key], value)
    from safetensors.torch import load_file  # the files are standard safetensors

    assert torch.equal(load_file(str(marker.with_name("step-000000001.model.safetensors")))["weight"], model.weight)


# -- checkpoint fallback and what a state may name -------------------------------------------------
def test_evaluate_says_which_checkpoint_it_skipped(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    newest = ck.list_checkpoints(run)[-1]
    newest.write_text(newest.read_text().replace('"epoch"', '"epoch" ', 1)[:-20])  # torn JSON
    code = main(["evaluate", str(run), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipped checkpoint {newest.name}" in captured.err and "unreadable" in captured.err


def test_dtype_mismatch_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    from cnnatlas.weights import check_state_dict

    model = nn.Linear(3, 2)
    state = {k: v.to(torch.int8) if k == "weight" else v for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="dtype mismatches.*int8"):
        check_state_dict(model, state)


def test_a_failed_resume_releases_the_lock(finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    config = json.loads((run / "config.json").read_text())
    config["world_size"] = 2  # fails after the lock was taken
    (run / "config.json").write_text(json.dumps(config))
    code, err = _main(capsys, "train", "lenet5_modern", "--resume", str(run), "--quiet")
    _one_line_error(code, err, "trained on 2 processes")
    with lock_run_dir(run):  # free again in this very process
        pass
