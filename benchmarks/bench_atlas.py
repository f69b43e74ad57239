"""Time `cnnatlas atlas` for every registered model (docs/benchmarks.md, "HTML atlas").

    python benchmarks/bench_atlas.py [--jobs N] [--models PATTERN ...]

Prints the wall time of the build, the CPU time of this process and its workers (and of the
Graphviz processes they ran), the load average before and after (the machine may be shared), and
the slowest models. The site goes to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from cnnatlas.atlas import build_atlas


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description="time the HTML atlas build")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    cpu_before = cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        built = build_atlas(Path(tmp) / "site", args.models, jobs=args.jobs)
        wall = time.perf_counter() - started
        size = sum(f.stat().st_size for f in (Path(tmp) / "site").rglob("*") if f.is_file())
    cpu = cpu_seconds() - cpu_before
    print(f"models: {len(built.models)}, pages: {built.pages}, site: {size / 2**20:.1f} MiB")
    print(f"jobs: {args.jobs or os.cpu_count()} on {os.cpu_count()} CPUs, diagrams rendered: {built.diagrams_rendered}")
    print(f"wall: {wall:.1f} s, CPU (this process + workers + Graphviz): {cpu:.1f} s")
    print(f"load average before: {load_before[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print("slowest models (s, in a worker):", ", ".join(f"{name} {sec:.1f}" for name, sec in built.slowest))


if __name__ == "__main__":
    main()
