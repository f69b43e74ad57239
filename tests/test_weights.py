"""load_weights: .pth through weights_only, .safetensors, one clear error for mismatches."""

from __future__ import annotations

import pickle

import pytest
import torch

from cnnatlas.errors import CheckpointError
from cnnatlas.weights import load_weights, save_weights


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(4, 3))


def test_pth_and_safetensors_round_trip(tmp_path) -> None:
    src, dst = _net(), _net()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    load_weights(dst, tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    save_weights(src, tmp_path / "w.safetensors")
    other = _net()
    load_weights(other, tmp_path / "w.safetensors")
    assert torch.equal(other[1].weight, src[1].weight)


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path) -> None:
    state = _net().state_dict()
    state.pop("0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["1.weight"] = torch.zeros(5, 4)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        CheckpointError,
        match=(
            r"1 missing keys \(0.bias\); 1 unexpected keys \(extra.weight\); "
            r"1 shape mismatches \(1.weight: file \(5, 4\) vs model \(3, 4\)\)"
        ),
    ):
        load_weights(_net(), tmp_path / "bad.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path) -> None:
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(_net(), tmp_path / "evil.pth")


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(_net(), tmp_path / "none.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(_net(), tmp_path / "junk.safetensors")
