"""Training curves of one or more runs overlaid (He et al. 2016, Figs. 1 and 6: thin lines for
training, bold for test), and bar charts with error bars for repeated measurements.

:func:`curves` takes run directories (reading each run's ``metrics.jsonl`` and its label from
``config.json``) or :class:`RunCurves` built in memory; the trainer draws each run's own
``curves.png`` with it too, so there is one implementation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cnnatlas.errors import InputError
from cnnatlas.plot.output import new_figure

CURVE_METRICS = ("error", "train_error", "val_error", "test_error", "loss")
_SPLIT_STYLE = {"train": (0.9, 0.75), "val": (1.6, 0.9), "test": (2.6, 1.0)}  # line width, opacity
X_AXES = ("epoch", "step")
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")


@dataclass(frozen=True)
class RunCurves:
    """The per-epoch rows of one run (metrics.jsonl) and the label its lines get."""

    label: str
    rows: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def run_label(config: Mapping[str, Any], run_dir: str | os.PathLike[str] | None = None) -> str:
    """ "resnet20 · resnet_cifar · seed 0" from a run's config.json."""
    parts = [str(config.get("model", {}).get("name", ""))]
    recipe = config.get("recipe", {})
    if isinstance(recipe, Mapping) and recipe.get("name"):
        parts.append(str(recipe["name"]))
    if "seed" in config:
        parts.append(f"seed {config['seed']}")
    label = " · ".join(p for p in parts if p)
    return label or (Path(run_dir).name if run_dir is not None else "run")


def load_run_curves(run_dir: str | os.PathLike[str]) -> RunCurves:
    """A run directory's metrics and label; a directory without metrics is an InputError."""
    from cnnatlas.train.run import CONFIG_FILE, read_metrics

    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"run directory {str(run_dir)!r} does not exist")
    rows = read_metrics(path)
    if not rows:
        raise InputError(f"{str(run_dir)!r} has no training metrics (metrics.jsonl is missing or empty)")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        config = {}
    return RunCurves(run_label(config if isinstance(config, dict) else {}, path), tuple(rows))


def _series(rows: Sequence[Mapping[str, Any]], x: str, key: str, scale_error: bool) -> tuple[list, list]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is None or row.get(x) is None:
            continue
        xs.append(row[x])
        ys.append(100.0 * (1.0 - float(value)) if scale_error else float(value))
    return xs, ys


def _panel(axes: Any, runs: Sequence[RunCurves], metric: str, x: str) -> None:
    error = metric != "loss"
    which = ("train", "val", "test") if metric in ("error", "loss") else (metric.split("_")[0],)
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        for split in which:
            key = f"{split}_top1" if error else f"{split}_loss"
            xs, ys = _series(run.rows, x, key, error)
            if not xs:
                continue
            width, opacity = _SPLIT_STYLE[split]
            axes.plot(
                xs,
                ys,
                color=colour,
                linestyle=_LINESTYLES[(i // 10) % len(_LINESTYLES)] if split != "val" else "--",
                marker=_MARKERS[i % len(_MARKERS)],
                # a test set evaluated once (after the last epoch) is one point: draw it large
                markersize=8 if len(xs) == 1 else (3 if split == "test" else 2),
                markevery=max(1, len(xs) // 12),
                linewidth=width,
                alpha=opacity,
                label=f"{run.label} ({'validation' if split == 'val' else split})",
                gid=f"curve:{i}:{split}:{metric}",
            )
    axes.set_xlabel("epoch" if x == "epoch" else "iteration (optimiser steps)")
    axes.set_ylabel("top-1 error (%)" if error else "cross-entropy loss")
    axes.grid(alpha=0.3)


def curves(
    runs: Sequence[str | os.PathLike[str] | RunCurves] | str | os.PathLike[str] | RunCurves,
    metric: str | Sequence[str] = "error",
    x: str = "epoch",
    title: str | None = None,
) -> Any:
    """Overlay the runs' curves: ``metric`` is ``error`` or ``loss`` (training thin, validation
    medium and dashed, test bold), ``train_error``, ``val_error`` or ``test_error``, or a
    sequence of them for side-by-side panels; ``x`` is ``epoch`` or ``step``."""
    if isinstance(runs, (str, os.PathLike, RunCurves)):
        runs = [runs]
    loaded = [r if isinstance(r, RunCurves) else load_run_curves(r) for r in runs]
    if not loaded:
        raise InputError("no runs to plot")
    metrics = [metric] if isinstance(metric, str) else list(metric)
    for m in metrics:
        if m not in CURVE_METRICS:
            raise InputError(f"unknown curve metric {m!r}; choose from {', '.join(CURVE_METRICS)}")
    if x not in X_AXES:
        raise InputError(f"unknown x axis {x!r}; choose from {', '.join(X_AXES)}")
    figure = new_figure(5.5 * len(metrics) + 1.5, 4.8)
    grid = figure.add_gridspec(1, len(metrics), left=0.08, right=0.98, top=0.88, bottom=0.3, wspace=0.25)
    for i, m in enumerate(metrics):
        axes = figure.add_subplot(grid[0, i])
        _panel(axes, loaded, m, x)
        axes.set_title({"error": "top-1 error", "loss": "loss"}.get(m, m.replace("_", " ")))
    handles, labels = figure.axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    figure.suptitle(title or "training curves (thin: training, dashed: validation, bold: test)")
    return figure


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | None = None,
    *,
    ylabel: str,
    title: str = "",
    note: str = "",
    highlight: Sequence[str] = (),
) -> Any:
    """One bar per label with symmetric error bars (e.g. mean ± standard deviation over seeds);
    values are printed on the bars; bars named in ``highlight`` are hatched, not only coloured."""
    if len(labels) != len(values) or (errors is not None and len(errors) != len(values)):
        raise InputError("bars: labels, values and errors must have the same length")
    if not labels:
        raise InputError("bars: nothing to plot")
    figure = new_figure(max(5.0, 0.9 * len(labels) + 2), 4.8)
    axes = figure.add_axes((0.12, 0.25, 0.84, 0.65))
    patches = axes.bar(
        range(len(labels)),
        values,
        yerr=errors,
        capsize=4,
        color=["#DD8452" if label in highlight else "#4C72B0" for label in labels],
        edgecolor="black",
        gid="bars",
    )
    for patch, label, value, err in zip(patches, labels, values, errors or [None] * len(values)):
        if label in highlight:
            patch.set_hatch("//")
        text = f"{value:.3g}" if err is None else f"{value:.3g} ± {err:.2g}"
        axes.annotate(
            text,
            (patch.get_x() + patch.get_width() / 2, value + (err or 0)),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    if title:
        axes.set_title(title)
    if note:
        figure.text(0.01, 0.005, note, fontsize=7, ha="left", va="bottom", wrap=True)
    return figure


__all__ = ["CURVE_METRICS", "RunCurves", "bars", "curves", "load_run_curves", "run_label"]
