"""Checkpoint files: exact round trip, SHA-256 verification, pruning, atomicity under a crash."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnatlas.errors import CheckpointError, InputError
from cnnatlas.train import checkpoint as ck


def _model_and_optimizer(kind: str) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1.0, momentum=0.9)
    for _ in range(2):  # populate optimiser state (momentum buffers, RMSprop step/square_avg)
        loss = model(torch.randn(5, 1, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _save(run: Path, step: int, model: nn.Module, opt: torch.optim.Optimizer, keep: int = 2) -> Path:
    return ck.save_checkpoint(
        run,
        step=step,
        model_state=model.state_dict(),
        optimizer_state=opt.state_dict(),
        state={"model_name": "toy", "epoch": 0},
        keep=keep,
    )


@pytest.mark.parametrize("kind", ["sgd", "rmsprop"])
def test_round_trip_is_exact(tmp_path: Path, kind: str) -> None:
    model, opt = _model_and_optimizer(kind)
    _save(tmp_path, 7, model, opt)
    loaded = ck.load_latest_checkpoint(tmp_path)
    assert loaded.state["global_step"] == 7 and loaded.state["model_name"] == "toy"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model_state[key], value), key
    fresh_model, fresh_opt = _model_and_optimizer(kind)
    fresh_opt.load_state_dict(loaded.optimizer_state)
    want, got = opt.state_dict(), fresh_opt.state_dict()
    assert want["param_groups"] == got["param_groups"]
    for index, per_param in want["state"].items():
        for key, value in per_param.items():
            assert torch.equal(torch.as_tensor(got["state"][index][key]), torch.as_tensor(value)), (index, key)


def test_only_the_newest_two_are_kept(tmp_path: Path) -> None:
    model, opt = _model_and_optimizer("sgd")
    for step in (1, 2, 3):
        _save(tmp_path, step, model, opt)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-000000002.json", "step-000000003.json"]
    names = sorted(p.name for p in (tmp_path / ck.CHECKPOINT_DIR).iterdir())
    assert not any(n.startswith("step-000000001") for n in names)


def test_a_crash_before_the_commit_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, opt = _model_and_optimizer("sgd")
    _save(tmp_path, 1, model, opt)
    before = {p.name: p.read_bytes() for p in (tmp_path / ck.CHECKPOINT_DIR).iterdir()}
    real_replace = os.replace

    def crash_on_commit(src: str, dst: str) -> None:
        if str(dst).endswith(".json"):  # tensor files of step 2 are complete, the JSON never lands
            raise OSError("simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", crash_on_commit)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(InputError, match="cannot write"):
        _save(tmp_path, 2, model, opt)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    loaded = ck.load_latest_checkpoint(tmp_path)
    assert loaded.state["global_step"] == 1
    for name, data in before.items():  # nothing of the committed checkpoint was touched
        assert (tmp_path / ck.CHECKPOINT_DIR / name).read_bytes() == data
    assert not [p for p in (tmp_path / ck.CHECKPOINT_DIR).iterdir() if p.name.startswith(".tmp-")]


def test_a_crash_mid_write_never_exposes_a_torn_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    ck.atomic_write_bytes(target, b"old")

    def torn_fsync(fd: int) -> None:
        raise OSError("simulated crash during fsync")

    monkeypatch.setattr(ck.os, "fsync", torn_fsync)
    with pytest.raises(InputError, match="cannot write"):
        ck.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_corrupt_tensor_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    model, opt = _model_and_optimizer("sgd")
    marker = _save(tmp_path, 3, model, opt)
    files = json.loads(marker.read_text())["files"]
    path = tmp_path / ck.CHECKPOINT_DIR / files["model"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        ck.load_latest_checkpoint(tmp_path)


def test_missing_and_malformed_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ck.load_latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load_latest_checkpoint(tmp_path / "nowhere")
    (tmp_path / ck.CHECKPOINT_DIR).mkdir()
    (tmp_path / ck.CHECKPOINT_DIR / "step-000000001.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        ck.load_latest_checkpoint(tmp_path)


def test_rng_state_encoding_round_trips() -> None:
    generator = torch.Generator().manual_seed(123)
    state = generator.get_state()
    restored = torch.Generator()
    restored.set_state(ck.decode_bytes_tensor(ck.encode_bytes_tensor(state)))
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=restored))


def _save_toy(run: Path, step: int) -> Path:
    model, opt = _model_and_optimizer("sgd")
    with torch.no_grad():
        model[0].weight.add_(step)  # each step's weights differ
    return _save(run, step, model, opt)


# -- what is pruned, what a state may name, fallback -------------------------------------------
def test_pruning_never_touches_user_files(tmp_path: Path) -> None:
    folder = tmp_path / ck.CHECKPOINT_DIR
    (folder / "best").mkdir(parents=True)
    user = {"my_model.pt": b"x", "NOTES.txt": b"notes", "best.safetensors": b"w", "step-1.json": b"{}"}
    for name, data in user.items():
        (folder / name).write_bytes(data)
    (folder / "best" / "weights.bin").write_bytes(b"keep")
    for step in (1, 2, 3, 4):
        _save_toy(tmp_path, step)
    for name, data in user.items():
        assert (folder / name).read_bytes() == data
    assert (folder / "best" / "weights.bin").read_bytes() == b"keep"
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-000000003.json", "step-000000004.json"]
    assert not list(folder.glob("step-00000000[12].*"))


def test_a_folder_in_the_way_of_a_checkpoint_file_keeps_the_committed_ones(tmp_path: Path) -> None:
    _save_toy(tmp_path, 1)
    _save_toy(tmp_path, 2)
    (tmp_path / ck.CHECKPOINT_DIR / "step-000000003.model.safetensors").mkdir()
    with pytest.raises(Exception, match="cannot write"):
        _save_toy(tmp_path, 3)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-000000001.json", "step-000000002.json"]
    ck.load_latest_checkpoint(tmp_path)


def test_files_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        marker = _save_toy(tmp_path, 1)
    finally:
        os.umask(old)
    for path in [marker, *marker.parent.glob("step-*.safetensors")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_broken_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path) -> None:
    _save_toy(tmp_path, 1)
    newest = _save_toy(tmp_path, 2)
    tensors = newest.with_name("step-000000002.model.safetensors")
    tensors.write_bytes(tensors.read_bytes()[:-3] + b"bad")
    loaded = ck.load_latest_checkpoint(tmp_path)
    assert loaded.state["global_step"] == 1
    assert len(loaded.skipped) == 1 and "step-000000002.json" in loaded.skipped[0] and "SHA-256" in loaded.skipped[0]


def _retamper(marker: Path, edit: dict) -> None:
    state = json.loads(marker.read_text())
    state.update(edit)
    state["state_sha256"] = ck._state_digest(state)  # a careful forger: the hash alone does not stop this
    marker.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "files, needle",
    [
        ({"model": "/dev/zero", "optimizer": "x"}, "plain names"),
        ({"model": "../../other/step-000000001.model.safetensors", "optimizer": "x"}, "plain names"),
    ],
)
def test_a_state_may_name_only_its_own_files(tmp_path: Path, files: dict, needle: str) -> None:
    marker = _save_toy(tmp_path, 1)
    _retamper(marker, {"files": files})
    with pytest.raises(CheckpointError, match=needle):
        ck.load_checkpoint(marker)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
def test_tensor_files_must_be_regular_files_of_the_folder(tmp_path: Path, kind: str) -> None:
    marker = _save_toy(tmp_path, 1)
    target = marker.with_name("step-000000001.model.safetensors")
    outside = tmp_path / "outside.safetensors"
    shutil.move(target, outside)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(outside)
    else:
        target.mkdir()
    with pytest.raises(CheckpointError, match="FIFO|symbolic link|folder"):
        ck.load_checkpoint(marker)


def test_an_edited_state_fails_its_integrity_hash(tmp_path: Path) -> None:
    marker = _save_toy(tmp_path, 1)
    marker.write_text(marker.read_text().replace('"epoch": 0', '"epoch": 7'))
    with pytest.raises(CheckpointError, match="integrity hash"):
        ck.load_checkpoint(marker)
