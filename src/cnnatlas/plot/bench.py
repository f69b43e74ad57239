"""Charts of `cnnatlas bench` results: the figures of Canziani, Paszke & Culurciello 2016.

::

    import cnnatlas.plot as plot
    result = plot.load_bench_result("bench.json")   # written by `cnnatlas bench --format json`
    fig = plot.bench(result)                         # three panels, see below
    plot.save_figure(fig, "bench.png")

Panels: forward time per image against batch size (their Fig. 3, log–log), peak memory
against batch size (their Fig. 4), and operations against measured time at one batch size with
the least-squares line and its R², log–log once the MACs span ten times or more — "is the number
of operations a good predictor of speed?" Which networks sit above the line depends on the
machine; on a 2-core CPU (docs/benchmarks.md, "Operations against time") GoogLeNet and
DenseNet-121 do, and the networks built to save operations reach a smaller share of the
machine's peak than plain stacks of wide convolutions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from cnnatlas.errors import DataError, InputError
from cnnatlas.plot.labels import place_labels
from cnnatlas.plot.output import new_figure

_MAX_RESULT_BYTES = 64 * 2**20
# The operations-against-time panel goes log–log when the largest network has this many times
# the smallest one's MACs.
LOG_AXES_RANGE = 10.0


def load_bench_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file written by ``cnnatlas bench --format json`` (size-checked, validated)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"bench result {str(path)!r} does not exist")
    if path.stat().st_size > _MAX_RESULT_BYTES:
        raise DataError(f"{str(path)!r} is too large for a bench result")
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{str(path)!r} is not a JSON bench result: {exc}") from None
    rows = result.get("results") if isinstance(result, dict) else None
    needed = {"model", "backend", "dtype", "batch", "ms_per_image", "macs_per_image"}
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and needed <= set(r) for r in rows):
        raise DataError(f"{str(path)!r} is not a `cnnatlas bench --format json` result (no results rows)")
    return result


def _series_key(row: Mapping[str, Any], varied: Sequence[str]) -> str:
    extra = [str(row[k]) for k in varied]
    return row["model"] + (f" ({', '.join(extra)})" if extra else "")


def _series(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Mapping[str, Any]]], list[str]]:
    """The rows grouped by (model, and whichever of backend, dtype, mode vary) → the series' label,
    and the keys that vary."""
    varied = [k for k in ("backend", "dtype", "mode") if len({r.get(k) for r in rows}) > 1]
    series: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        series.setdefault(_series_key(row, varied), []).append(row)
    return series, varied


def operations_rows(result: Mapping[str, Any], batch: int | None = None) -> tuple[int, list[Mapping[str, Any]]]:
    """The rows the operations-against-time comparison uses: each series' row at ``batch``
    (default: the largest batch size measured for every series), and that batch size."""
    rows = list(result["results"])
    series, _ = _series(rows)
    common = set.intersection(*({r["batch"] for r in points} for points in series.values()))
    if batch is None:
        if not common:
            raise InputError("no batch size was measured for every model; pass one that was")
        batch = max(common)
    chosen = [r for points in series.values() for r in points if r["batch"] == batch]
    if not chosen:
        raise InputError(f"batch size {batch} was not measured; measured: {sorted({r['batch'] for r in rows})}")
    return batch, chosen


def bench(result: Mapping[str, Any], *, batch: int | None = None) -> Any:
    """The three panels for every (model, backend, dtype, mode) series in ``result``;
    ``batch`` picks the batch size of the operations-vs-time panel (default: the largest
    measured for every model)."""
    from cnnatlas.bench import fit_time_against_operations

    series, varied = _series(list(result["results"]))

    figure = new_figure(15, 4.6)
    time_axes, memory_axes, ops_axes = figure.subplots(1, 3)
    for label, points in series.items():
        points = sorted(points, key=lambda r: r["batch"])
        batches = [r["batch"] for r in points]
        time_axes.plot(batches, [r["ms_per_image"] for r in points], marker="o", label=label)
        memory = [(r["batch"], r["peak_memory_bytes"] / 2**20) for r in points if r.get("peak_memory_bytes")]
        if memory:
            memory_axes.plot(*zip(*memory), marker="o", label=label)
    for axes in (time_axes, memory_axes):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.grid(alpha=0.3, which="both")
    time_axes.set(xlabel="batch size", ylabel="forward time per image (ms)", title="time per image vs batch")
    memory_axes.set(xlabel="batch size", ylabel="peak memory (MiB)", title="memory vs batch")
    time_axes.legend(fontsize=7)

    batch, chosen = operations_rows(result, batch)
    xs = [r["macs_per_image"] / 1e9 for r in chosen]
    ys = [r["ms_per_image"] for r in chosen]
    ops_axes.scatter(xs, ys, zorder=3)
    fit = fit_time_against_operations(list(zip(xs, ys)))
    title = f"operations vs time, batch {batch}"
    # Networks an order of magnitude apart (MobileNet's 0.57 G-MACs, VGG16's 15.5) crowd the
    # small ones into a corner on linear axes; on log axes each one's distance from the line shows.
    logarithmic = min(xs) > 0 and min(ys) > 0 and max(xs) / min(xs) >= LOG_AXES_RANGE
    if fit is not None:
        low, high = min(xs), max(xs)
        steps = 64  # the straight line is a curve on log axes, so draw it through many points
        line_x = [low * (high / low) ** (i / steps) for i in range(steps + 1)] if logarithmic else [low, high]
        line = [(v, fit["intercept_ms"] + fit["ms_per_gmac"] * v) for v in line_x]
        ops_axes.plot(
            *zip(*[(v, ms) for v, ms in line if ms > 0 or not logarithmic]),
            linestyle="--",
            color="grey",
            label=f"fit: {fit['intercept_ms']:.2f} ms + {fit['ms_per_gmac']:.2f} ms/G-MAC, R² = {fit['r2']:.2f}",
        )
        ops_axes.legend(fontsize=7, loc="upper left")
    if logarithmic:
        ops_axes.set_xscale("log")
        ops_axes.set_yscale("log")
    ops_axes.set(xlabel="G-MACs per image (analyser)", ylabel="measured ms per image", title=title)
    ops_axes.grid(alpha=0.3, which="both" if logarithmic else "major")
    ops_axes.margins(0.15)
    figure.canvas.draw()  # final limits before the labels are placed
    place_labels(ops_axes, xs, ys, [_series_key(r, varied) for r in chosen])
    env = result.get("environment", {})
    figure.suptitle(
        f"{env.get('cpu', '?')}, {env.get('threads', '?')} threads, torch {env.get('torch', '?')}", fontsize=9
    )
    figure.tight_layout()
    return figure


__all__ = ["bench", "load_bench_result", "operations_rows"]
