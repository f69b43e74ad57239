"""LeNet-5's default command over several seeds: validation and test top-1, wall time.

Runs ``cnnatlas train lenet5 --seed S --quiet`` (plus any ``--set FIELD=VALUE``) once per seed,
one after the other, each timed as a whole command (start-up and imports included), and reads
the run's metrics.jsonl. The recipe's validation split (1,000 of the sample's 8,000 training
digits, seed 0) is what settings are compared on; the 1,000 test digits are the result.

Usage::

    python benchmarks/lenet5_seeds.py --seeds 3 --set logit_temperature=1 --validation-only
    python benchmarks/lenet5_seeds.py --seeds 10 --publish

``--validation-only`` prints no test figure (for choosing settings). ``--publish`` (default
recipe only) writes the result between the ``lenet5-result`` markers of README.md and
docs/benchmarks.md, so the published figure is this script's output. ``--save FILE`` keeps the
per-seed rows and the settings (JSON); ``--load FILE --publish`` publishes saved rows without
training again; ``--recheck FILE …`` writes the validation accuracy of several saved settings
between the ``lenet5-recheck`` markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<!-- lenet5-result:start -->", "<!-- lenet5-result:end -->")
RECHECK_MARKERS = ("<!-- lenet5-recheck:start -->", "<!-- lenet5-recheck:end -->")


def run_seed(seed: int, settings: list[str], out: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "cnnatlas", "train", "lenet5", "--seed", str(seed), "--quiet", "--out", str(out)]
    for setting in settings:
        command += ["--set", setting]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    device = json.loads((out / "config.json").read_text())["device"]
    threads = torch.get_num_threads()  # what the child process gets too (OMP_NUM_THREADS, cores)
    return {
        "seed": seed,
        "val": 100 * last["val_top1"],
        "test": 100 * last["test_top1"],
        "wall": wall,
        "device": device,
        "threads": threads,
    }


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def table(rows: list[dict[str, float]], validation_only: bool) -> str:
    keys = [("val", "validation top-1 %"), ("wall", "wall s")]
    if not validation_only:
        keys.insert(1, ("test", "test top-1 %"))
    lines = [
        "| seed | " + " | ".join(str(r["seed"]) for r in rows) + " | mean ± std |",
        "|---" * (len(rows) + 2) + "|",
    ]
    for key, label in keys:
        cells = " | ".join(f"{r[key]:.{1 if key == 'wall' else 2}f}" for r in rows)
        lines.append(f"| {label} | {cells} | {mean_std([r[key] for r in rows])} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def publish(rows: list[dict[str, float]], note: str) -> None:
    tests = [r["test"] for r in rows]
    summary = (
        f"{min(tests):.1f}–{max(tests):.1f} % top-1, mean {statistics.mean(tests):.2f} % over {len(rows)} seeds, "
        "on the 1,000 test digits"
    )
    _replace_between(ROOT / "README.md", summary)
    devices = sorted({f"{r['device']}, {r['threads']} thread(s) per run" for r in rows})
    details = (
        f"`python benchmarks/lenet5_seeds.py --seeds {len(rows)} --publish` on {machine()} "
        f"({'; '.join(devices)}){': ' + note if note else ''}.\n\n" + table(rows, False) + "\n"
    )
    _replace_between(ROOT / "docs" / "benchmarks.md", details)


def publish_recheck(saved: list[dict]) -> None:
    lines = [
        "| settings (`--set`) | seeds | validation top-1 % per seed | mean ± std | wall s |",
        "|---|---|---|---|---|",
    ]
    for entry in saved:
        rows = entry["rows"]
        per_seed = " / ".join(f"{r['val']:.2f}" for r in rows)
        walls = [r["wall"] for r in rows]
        label = " ".join(entry["settings"]) or "recipe defaults"
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(
            f"| {label} | {seeds} | {per_seed} | {mean_std([r['val'] for r in rows])} | {min(walls):.0f}–{max(walls):.0f} |"
        )
    text = f"`python benchmarks/lenet5_seeds.py --recheck …` on {machine()}:\n\n" + "\n".join(lines) + "\n"
    _replace_between(ROOT / "docs" / "benchmarks.md", text, RECHECK_MARKERS)


def _replace_between(path: Path, text: str, markers: tuple[str, str] = MARKERS) -> None:
    start, end = markers
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(content):
        raise SystemExit(f"{path}: markers {start} … {end} not found")
    path.write_text(pattern.sub(lambda _: f"{start}{text}{end}", content), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--validation-only", action="store_true", help="print no test figure")
    parser.add_argument("--publish", action="store_true", help="write the result into README.md and docs/")
    parser.add_argument("--note", default="", help="a remark on the machine's state, published with the figures")
    parser.add_argument("--save", type=Path, help="write the per-seed rows to this JSON file")
    parser.add_argument(
        "--load",
        type=Path,
        nargs="+",
        help="read per-seed rows saved by --save (one or more files) instead of training",
    )
    parser.add_argument("--recheck", type=Path, nargs="+", help="publish the validation accuracy of saved runs")
    args = parser.parse_args()
    if args.recheck:  # files saved with the same --set settings are one row (e.g. one file per seed)
        grouped: dict[tuple[str, ...], list[dict]] = {}
        for path in args.recheck:
            saved = json.loads(path.read_text())
            grouped.setdefault(tuple(saved["settings"]), []).extend(saved["rows"])
        entries = [{"settings": list(k), "rows": sorted(v, key=lambda r: r["seed"])} for k, v in grouped.items()]
        publish_recheck(sorted(entries, key=lambda e: e["settings"]))
        return
    if args.publish and (args.set or args.validation_only):
        raise SystemExit("--publish is for the default recipe and reports the test figure")
    rows = [row for path in args.load or () for row in json.loads(path.read_text())["rows"]]
    rows.sort(key=lambda row: row["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds) if not args.load else ():
            rows.append(run_seed(seed, args.set, Path(tmp) / f"seed{seed}"))
            shown = {k: v for k, v in rows[-1].items() if not (args.validation_only and k == "test")}
            print(json.dumps(shown), flush=True)
            if args.save:
                args.save.write_text(json.dumps({"settings": args.set, "rows": rows}))
    print(f"\nlenet5 {' '.join(args.set) or '(recipe defaults)'} on {machine()}\n")
    print(table(rows, args.validation_only))
    if args.publish:
        publish(rows, args.note)


if __name__ == "__main__":
    main()
