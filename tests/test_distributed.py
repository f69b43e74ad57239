"""DDP: shards partition the global batch; 2 gloo processes equal 1 process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnatlas.train.distributed import DistContext, shard_indices
from cnnatlas.train.trainer import epoch_permutation


def test_rank_shards_of_a_step_are_the_single_process_global_batch() -> None:
    perm = epoch_permutation(103, seed=5, epoch=2)
    per_rank, world, steps = 4, 3, 103 // 12
    shards = [shard_indices(perm, DistContext(rank=r, world_size=world), per_rank, steps) for r in range(world)]
    for step in range(steps):
        together = torch.cat([s[step * per_rank : (step + 1) * per_rank] for s in shards])
        single = perm[step * per_rank * world : (step + 1) * per_rank * world]
        assert sorted(together.tolist()) == sorted(single.tolist())
    assert len(set(torch.cat(shards).tolist())) == steps * per_rank * world  # disjoint, none repeated


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(sorted((run / "checkpoints").glob("*.model.safetensors"))[-1]))


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    # lenet5_modern has neither batch norm nor dropout, and augmentation is off: then the mean of
    # the two ranks' gradients (DDP's all-reduce) is exactly the gradient of the global batch, so
    # parameters agree up to float summation order. (With BN each rank would normalise with its
    # own half-batch statistics unless SyncBatchNorm is used; with random augmentation each rank
    # draws its own crops — statistically the same training, not the same numbers.)
    common = [
        "lenet5_modern",
        "--limit-train",
        "256",
        "--limit-test",
        "32",
        "--batch-size",
        "32",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "augment=none",
        "--deterministic",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, "-m", "cnnatlas", "train", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "cnnatlas",
            "train",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)
    import json

    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_rank_batch"] == 16 and config["global_batch"] == 32


@pytest.mark.slow
def test_a_bad_option_under_torchrun_is_one_line_from_rank_0(tmp_path: Path) -> None:
    # every rank validates before the process group starts; only rank 0 reports
    out = tmp_path / "never"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "cnnatlas"]
        + ["train", "lenet5_modern", "--workers", "-1", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "cnnatlas: error:" in line]
    assert result.returncode != 0 and len(ours) == 1 and "--workers must be" in ours[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr.split("cnnatlas: error:")[0] and not out.exists()
