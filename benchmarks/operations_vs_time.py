"""Is the number of operations a good predictor of speed? A table from a `cnnatlas bench` result.

    cnnatlas bench alexnet vgg16 googlenet resnet18 resnet50 densenet121 squeezenet1_0 \\
        mobilenet_v1_100 --batch 1,4,16 --backend fast --format json --out docs/bench/classic-cpu.json
    python benchmarks/operations_vs_time.py docs/bench/classic-cpu.json [--batch 16] \\
        [--figure docs/bench/classic-cpu.png]

For each model of a one-backend result at the chosen batch size (default: the largest measured
for every model, as in the plot's operations panel): the analyser's G-MACs per image, the
measured milliseconds per image, the GFLOP/s achieved and its fraction of the machine's peak,
and the time the least-squares line ``ms = a + b × G-MACs`` predicts for it (the question
Canziani, Paszke & Culurciello 2016 ask of their measurements) — so the networks whose time the
operation count does not explain stand out. Also the time per image at
the smallest batch, against the chosen one: how much batching buys each network. ``--figure``
saves ``cnnatlas plot bench``'s three panels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cnnatlas.bench import fit_time_against_operations
from cnnatlas.errors import InputError
from cnnatlas.plot.bench import load_bench_result, operations_rows


def table(result: dict[str, Any], batch: int | None) -> tuple[list[str], dict[str, float]]:
    """The markdown lines and the fit (intercept_ms, ms_per_gmac, r2) at ``batch``."""
    models = {row["model"] for row in result["results"]}
    try:  # the rows the plot's operations panel uses, so table and figure agree
        batch, rows = operations_rows(result, batch)
        smallest, first_rows = operations_rows(result, min(row["batch"] for row in result["results"]))
    except InputError as exc:
        raise SystemExit(str(exc)) from None
    if len({row["model"] for row in rows}) != len(models) or len(first_rows) != len(rows):
        raise SystemExit(f"batch sizes {smallest} and {batch} must both be measured for every model")
    chosen = {row["model"]: row for row in rows}
    first = {row["model"]: row for row in first_rows}
    fit = fit_time_against_operations([(r["macs_per_image"] / 1e9, r["ms_per_image"]) for r in chosen.values()])
    if fit is None:
        raise SystemExit("a fit needs at least two models with different MAC counts")
    lines = [
        f"| model | G-MACs per image | ms per image, batch {batch} | GFLOP/s | of peak | line predicts | "
        f"measured ÷ predicted | ms per image, batch {smallest} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, row in sorted(chosen.items(), key=lambda kv: kv[1]["macs_per_image"]):
        gmacs = row["macs_per_image"] / 1e9
        predicted = fit["intercept_ms"] + fit["ms_per_gmac"] * gmacs
        fraction = f"{100 * row['peak_fraction']:.0f}%" if row.get("peak_fraction") is not None else "–"
        lines.append(
            f"| {model} | {gmacs:.2f} | {row['ms_per_image']:.1f} | {row['gflops']:.1f} | {fraction} | "
            f"{predicted:.1f} | {row['ms_per_image'] / predicted:.2f} | {first[model]['ms_per_image']:.1f} |"
        )
    lines.append(
        f"\nFit at batch {batch}: ms per image = {fit['intercept_ms']:.2f} + {fit['ms_per_gmac']:.2f} × G-MACs, "
        f"R² = {fit['r2']:.3f} over {len(chosen)} networks."
    )
    return lines, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="written by `cnnatlas bench --format json --out`")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--figure", type=Path, default=None, help="also save the three panels here")
    args = parser.parse_args(argv)
    result = load_bench_result(args.result)
    env = result.get("environment", {})
    print(
        f"# {env.get('cpu')}, {env.get('threads')} threads, torch {env.get('torch')}, "
        f"backend {result['results'][0]['backend']} {result['results'][0]['dtype']}, "
        f"load average at start {env.get('load_average')}"
    )
    lines, _ = table(result, args.batch)
    print("\n".join(lines))
    if args.figure:
        import cnnatlas.plot as plot

        plot.save_figure(plot.bench(result, batch=args.batch), args.figure)
        print(f"\n# figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
