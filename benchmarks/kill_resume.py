"""Kill-and-resume loop: N SIGKILLs at random moments of a small training run, then a resume to
the end; the final parameters must be bit-identical to an uninterrupted run.

The run: LeNet-5 (the paper's, with its random affine distortions) on the first 512 digits of
the bundled MNIST sample, batch 32, 8 epochs = 128 steps, a checkpoint after every step,
``--deterministic`` on the CPU. Each trial starts the run (or resumes it), waits until it has
committed a new checkpoint, sleeps a random fraction of a step and sends SIGKILL, so kills land
anywhere in a step, also in the middle of writing a checkpoint (counted when a temporary file
is left behind). Every trial advances at least one step, so N must stay below the step count.

    python benchmarks/kill_resume.py --kills 50

Prints one line per trial and a summary; exits 1 when the parameters differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = [
    "lenet5",
    "--limit-train",
    "512",
    "--limit-test",
    "64",
    "--batch-size",
    "32",
    "--epochs",
    "8",
    "--checkpoint-every-steps",
    "1",
    "--deterministic",
    "--device",
    "cpu",
    "--quiet",
]
TOTAL_STEPS = 128


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnatlas", "train", *args]


def _newest_step(run: Path) -> int:
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.json")) if (run / "checkpoints").is_dir() else []
    return int(names[-1][5:14]) if names else -1


def _final_tensors(run: Path) -> dict[str, bytes]:
    from safetensors.torch import load_file

    newest = sorted((run / "checkpoints").glob("step-*.model.safetensors"))[-1]
    return {k: v.numpy().tobytes() for k, v in load_file(str(newest)).items()}


def _digest(tensors: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode() + tensors[key])
    return digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", help="folder for the two runs (default: a temporary folder)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="stop killing after this many seconds of the loop (then resume to the end and compare)",
    )
    args = parser.parse_args()
    if not 0 < args.kills < TOTAL_STEPS:
        parser.error(f"--kills must be between 1 and {TOTAL_STEPS - 1}")
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="cnnatlas-kill-"))
    straight, killed = work / "straight", work / "killed"

    if _newest_step(straight) == TOTAL_STEPS:  # a finished reference of an earlier call
        print("reference run reused", flush=True)
    else:
        start = time.perf_counter()
        subprocess.run(_cli(*RUN, "--out", str(straight)), check=True)
        print(f"reference run: {time.perf_counter() - start:.1f} s ({TOTAL_STEPS} steps)", flush=True)
    # One step's time from the run's own epoch times (start-up excluded, the per-step checkpoint
    # included): kills then land within about a step of the newest checkpoint, so N kills need
    # little more than N steps.
    reference_s = sum(json.loads(line)["epoch_time_s"] for line in (straight / "metrics.jsonl").open())
    step_s = reference_s / TOTAL_STEPS

    kills = mid_write = 0
    start = time.perf_counter()
    while kills < args.kills:
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent after {kills} kills", flush=True)
            break
        before = _newest_step(killed)
        if before >= TOTAL_STEPS:
            break
        command = _cli(*RUN, "--out", str(killed)) if before < 0 else _cli("lenet5", "--resume", str(killed), "--quiet")
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while proc.poll() is None and _newest_step(killed) <= before:
            time.sleep(0.002)
        if proc.poll() is not None:  # finished (or failed) before the kill
            err = proc.stderr.read().decode() if proc.stderr else ""
            if proc.returncode != 0:
                print(f"trial {kills + 1}: the run failed: {err.strip()}", file=sys.stderr)
                return 1
            break
        time.sleep(rng.uniform(0, 1.5 * step_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        leftovers = [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
        mid_write += bool(leftovers)
        print(f"kill {kills}: after step {_newest_step(killed)}{' (mid-write)' if leftovers else ''}", flush=True)
    loop_s = time.perf_counter() - start
    final = subprocess.run(_cli("lenet5", "--resume", str(killed), "--quiet"), capture_output=True, text=True)
    if final.returncode != 0:
        print(f"final resume failed: {final.stderr.strip()}", file=sys.stderr)
        return 1

    want, got = _final_tensors(straight), _final_tensors(killed)
    identical = want == got
    print(
        f"kills: {kills} ({mid_write} while a checkpoint was being written), loop {loop_s:.1f} s; "
        f"final parameters {'bit-identical' if identical else 'DIFFER'} "
        f"(sha256 {_digest(want)} vs {_digest(got)}); work folder {work}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
