"""The notes' pictures, drawn from the registry and the analyser: the accuracy-vs-operations
bubble chart, the ILSVRC winners, per-layer costs and receptive-field growth.

Each function returns a :class:`matplotlib.figure.Figure` (see :mod:`cnnatlas.plot.output` for
saving it) with a title, axis units and a source note; families are told apart by marker
shape as well as colour, so the charts survive black-and-white print.
"""

from __future__ import annotations

from typing import Any, Sequence

from cnnatlas.errors import InputError
from cnnatlas.plot.data import (
    bubble_points,
    chart_layers,
    expand_models,
    layer_kind,
    layer_shares,
    rf_rows,
    winner_bars,
)
from cnnatlas.plot.labels import place_labels
from cnnatlas.plot.output import new_figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "p", "*", "d", "H", "8")
LAYER_METRICS = ("activations", "params", "macs")
KIND_HATCH = {"conv": "", "pool": "..", "fc": "//"}
KIND_COLOUR = {"conv": "#4C72B0", "pool": "#8C8C8C", "fc": "#DD8452"}
SOURCE_FONT = 7


def family_styles(names: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """A (colour, marker) pair per family, fixed by the sorted family names."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    return {
        family: (palette[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20], MARKERS[i % len(MARKERS)])
        for i, family in enumerate(sorted(names))
    }


def _note(figure: Any, text: str) -> None:
    figure.text(0.01, 0.005, text, fontsize=SOURCE_FONT, ha="left", va="bottom", wrap=True, color="#333333")


# -- bubble chart -----------------------------------------------------------------------------------
def bubble(
    models: Sequence[str] | None = None,
    *,
    log_x: bool = True,
    protocol: str = "1 crop",
    title: str = "ImageNet top-1 accuracy against operations (bubble area ∝ parameters)",
) -> Any:
    """Top-1 accuracy (ImageNet-1k val) against G-MACs, bubble area proportional to parameters,
    one colour and marker per family (Canziani, Paszke & Culurciello 2016, Fig. 2).

    ``models``: names or fnmatch patterns (default: every ImageNet model with a published
    top-1). Hollow markers are figures from another test protocol than ``protocol``.
    """
    points, left_out = bubble_points(models, protocol)
    if not points:
        raise InputError("none of the chosen models has a published ImageNet top-1 figure to plot")
    styles = family_styles({p.family for p in points})
    figure = new_figure(11, 7.5)
    axes = figure.add_axes((0.08, 0.14, 0.66, 0.78))
    scale = 12.0  # points² of marker area per million parameters
    for family, (colour, marker) in styles.items():
        for hollow in (False, True):
            group = [p for p in points if p.family == family and p.other_protocol == hollow]
            if not group:
                continue
            axes.scatter(
                [p.macs / 1e9 for p in group],
                [p.top1_accuracy for p in group],
                s=[max(12.0, scale * p.params / 1e6) for p in group],
                marker=marker,
                facecolors="none" if hollow else [colour],
                edgecolors=[colour],
                linewidths=1.4,
                alpha=0.75 if not hollow else 1.0,
                label=family if not hollow else None,
                gid=f"bubble:{family}:{'hollow' if hollow else 'solid'}",
                zorder=3,
            )
    if log_x:
        axes.set_xscale("log")
    xs = [p.macs / 1e9 for p in points]
    ys = [p.top1_accuracy for p in points]
    if log_x:
        axes.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    else:
        axes.set_xlim(0, max(xs) * 1.08)
    axes.set_ylim(min(ys) - 3, max(ys) + 3)
    axes.set_xlabel("operations per image (G-MACs, one forward pass" + (", log scale)" if log_x else ")"))
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    place_labels(axes, xs, ys, [p.model for p in points])

    from matplotlib.lines import Line2D

    family_handles = [
        Line2D([], [], linestyle="", marker=m, markersize=8, markerfacecolor=c, markeredgecolor=c, label=f)
        for f, (c, m) in styles.items()
    ]
    protocol_handles = [
        Line2D([], [], linestyle="", marker="o", markersize=8, color="black", label=f"{protocol} (filled)"),
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=8,
            markerfacecolor="none",
            markeredgecolor="black",
            label="another protocol (hollow):\n10 crops, dense or not stated",
        ),
    ]
    size_handles = [
        Line2D(
            [],
            [],
            linestyle="",
            marker="o",
            markersize=(scale * m) ** 0.5,
            markerfacecolor="none",
            markeredgecolor="gray",
            label=f"{m:g}M parameters",
        )
        for m in (5, 25, 100)
    ]
    legend = axes.legend(
        handles=family_handles, title="family", loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8
    )
    axes.add_artist(legend)
    axes.legend(
        handles=protocol_handles + size_handles,
        loc="lower left",
        bbox_to_anchor=(1.02, 0.0),
        fontsize=8,
        labelspacing=1.6,
        borderpad=1.0,
    )
    sources = sorted({p.result.reference or "the networks' papers" for p in points})
    note = (
        f"Accuracy: single model, ImageNet-1k validation; {protocol} where published, from {', '.join(sources)} "
        "(cnnatlas.published). MACs and parameters: cnnatlas analyser at each network's own input size."
    )
    if left_out:
        note += f" No top-1 figure for: {', '.join(left_out)}."
    _note(figure, note)
    figure.atlas_points = points  # what was plotted, for the HTML atlas and tests
    return figure


# -- ILSVRC winners -----------------------------------------------------------------------------------
def winners(title: str = "ILSVRC classification winners: top-5 error and depth") -> Any:
    """Top-5 test error of the registered ILSVRC entries by year, bars annotated with the depth
    (weight layers) of the network each entry is built from (the CS231n slide)."""
    bars = winner_bars()
    figure = new_figure(9, 5.5)
    axes = figure.add_axes((0.09, 0.2, 0.88, 0.7))
    positions = list(range(len(bars)))
    heights = [b.top5_error for b in bars]
    patches = axes.bar(
        positions,
        heights,
        color=["#4C72B0" if b.place == 1 else "#A1B6D8" for b in bars],
        edgecolor="black",
        hatch=None,
        gid="winners",
    )
    for patch, bar in zip(patches, bars):
        if bar.place != 1:
            patch.set_hatch("//")
        axes.annotate(
            f"{bar.top5_error:g}%\n{bar.depth} layers",
            (patch.get_x() + patch.get_width() / 2, patch.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
        for extra in bar.extra:
            axes.plot(
                [patch.get_x() + patch.get_width() / 2],
                [extra.result.error],
                marker="_",
                markersize=28,
                color="black",
            )
            axes.annotate(
                f"{extra.result.error:g}% with outside data",
                (patch.get_x() + patch.get_width(), extra.result.error),
                xytext=(4, -3),
                textcoords="offset points",
                fontsize=7,
                va="top",
            )
    axes.set_xticks(positions)
    axes.set_xticklabels(
        [f"{b.year}\n{b.team}\n({b.model}{'' if b.place == 1 else ', 2nd'})" for b in bars], fontsize=8
    )
    axes.set_ylabel("top-5 error on the ILSVRC test set (%)")
    axes.set_ylim(0, max(heights) * 1.25)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    sources = "; ".join(
        f"{b.year} {b.team}: {b.entry.result.reference or b.paper}, {b.entry.result.source}, "
        f"{b.entry.result.ensemble_text()}"
        for b in bars
    )
    _note(figure, f"Ensembles as submitted (cnnatlas.published.ILSVRC_ENTRIES). {sources}. Depth: cnnatlas analyser.")
    figure.atlas_bars = bars
    return figure


# -- per-layer costs ----------------------------------------------------------------------------------
_METRIC_LABEL = {
    "activations": ("activation memory (MiB, batch 1, float32)", lambda r: r.activation_bytes / 2**20),
    "params": ("parameters (millions)", lambda r: r.params / 1e6),
    "macs": ("multiply-accumulates (G-MACs)", lambda r: r.macs / 1e9),
}


def _check_sources(sources: Sequence[str]) -> None:
    """One clear error (with suggestions) for an unknown registered name before any work; other
    sources (torchvision:NAME, FILE.py:NAME, package.module:NAME) report their own problems."""
    from cnnatlas.sources import source_kind

    expand_models([s for s in sources if source_kind(s) == "registered"])


def layers(models: str | Sequence[str], metric: str = "all", title: str | None = None) -> Any:
    """Per-layer bars in the network's order (the notes' AlexNet/VGG16 cost tables) for one
    model or two side by side on one scale, with the three conclusions computed and written
    under each: the share of activation memory in the first quarter of depth, of parameters
    in fully connected layers, of MACs in convolutions."""
    from cnnatlas.analysis import analyze

    names = [models] if isinstance(models, str) else list(models)
    if not 1 <= len(names) <= 2:
        raise InputError(f"plot layers takes one or two models, got {len(names)}")
    if metric != "all" and metric not in LAYER_METRICS:
        raise InputError(f"unknown metric {metric!r}; choose from {', '.join((*LAYER_METRICS, 'all'))}")
    metrics = LAYER_METRICS if metric == "all" else (metric,)
    _check_sources(names)
    analyses = [analyze(name) for name in names]
    width = 7.5 * len(names)
    figure = new_figure(width, 2.6 * len(metrics) + 2.2)
    grid = figure.add_gridspec(len(metrics), len(names), left=0.08, right=0.98, top=0.9, bottom=0.22, hspace=0.55)
    conclusions = []
    for col, analysis in enumerate(analyses):
        rows = chart_layers(analysis)
        shares = layer_shares(analysis)
        conclusions.append(shares)
        for line, key in enumerate(metrics):
            label, value = _METRIC_LABEL[key]
            axes = figure.add_subplot(grid[line, col])
            kinds = [layer_kind(r) for r in rows]
            axes.bar(
                range(len(rows)),
                [value(r) for r in rows],
                color=[KIND_COLOUR[k] for k in kinds],
                hatch=None,
                edgecolor="black",
                linewidth=0.3,
                gid=f"layers:{analysis.model}:{key}",
            )
            for patch, kind in zip(axes.patches, kinds):
                patch.set_hatch(KIND_HATCH[kind])
            axes.set_ylabel(label, fontsize=8)
            axes.grid(axis="y", alpha=0.3)
            axes.set_xlim(-0.6, len(rows) - 0.4)
            step = max(1, len(rows) // 40)
            axes.set_xticks(range(0, len(rows), step))
            axes.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=6)
            if line == 0:
                axes.set_title(f"{analysis.model} ({'×'.join(map(str, analysis.input_shape[1:]))} input)")
        figure.text(
            0.08 + col * (0.9 / len(names)),
            0.065,
            "\n".join(f"• {s}" for s in shares.sentences()),
            fontsize=8.5,
            ha="left",
            va="bottom",
            gid=f"conclusions:{analysis.model}",
        )
    # one scale per metric across the models, so AlexNet and VGG16 compare by bar height
    for line in range(len(metrics)):
        row_axes = [figure.axes[col * len(metrics) + line] for col in range(len(names))]
        top = max(a.get_ylim()[1] for a in row_axes)
        for a in row_axes:
            a.set_ylim(0, top)
    from matplotlib.patches import Patch

    figure.legend(
        handles=[
            Patch(facecolor=KIND_COLOUR[k], hatch=KIND_HATCH[k], edgecolor="black", label=n)
            for k, n in (("conv", "convolution"), ("pool", "pooling"), ("fc", "fully connected"))
        ],
        loc="upper right",
        ncol=3,
        fontsize=8,
    )
    figure.suptitle(title or f"Cost per layer: {' vs '.join(names)}", x=0.08, ha="left")
    _note(figure, "cnnatlas analyser: activations = each layer's output, batch 1, float32; MACs of one forward pass.")
    figure.atlas_conclusions = conclusions
    return figure


# -- receptive field -------------------------------------------------------------------------------------
def rf(model: str, title: str | None = None) -> Any:
    """Receptive field (input pixels) and jump (effective stride) layer by layer."""
    from cnnatlas.analysis import analyze

    _check_sources([model])
    analysis = analyze(model)
    rows = rf_rows(analysis)
    if not rows:
        raise InputError(f"{model} has no convolution or pooling layer to chart")
    figure = new_figure(max(7.0, 0.22 * len(rows) + 3), 5)
    axes = figure.add_axes((0.09, 0.28, 0.8, 0.62))
    positions = list(range(len(rows)))
    axes.plot(
        positions,
        [r.receptive_field for r in rows],
        marker="o",
        linestyle="-",
        color="#4C72B0",
        label="receptive field (px)",
        gid="rf",
    )
    axes.axhline(analysis.input_shape[-1], color="gray", linestyle=":", linewidth=1)
    axes.annotate(
        f"input {analysis.input_shape[-1]} px",
        (0, analysis.input_shape[-1]),
        xytext=(2, 2),
        textcoords="offset points",
        fontsize=7,
        color="gray",
    )
    axes.set_ylabel("receptive field (input pixels)")
    jump_axes = axes.twinx()
    jump_axes.step(
        positions,
        [r.jump for r in rows],
        where="mid",
        linestyle="--",
        marker="s",
        markersize=3,
        color="#DD8452",
        label="jump (effective stride, px)",
        gid="jump",
    )
    jump_axes.set_ylabel("jump (input pixels between neighbouring outputs)")
    step = max(1, len(rows) // 45)
    axes.set_xticks(positions[::step])
    axes.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=6)
    axes.grid(alpha=0.3)
    handles = axes.get_legend_handles_labels()[0] + jump_axes.get_legend_handles_labels()[0]
    axes.legend(handles=handles, loc="center left", fontsize=8)
    axes.set_title(title or f"{model}: receptive field and jump by layer")
    _note(
        figure,
        "cnnatlas analyser: size of the input region that can affect one output, larger axis (docs/analysis.md).",
    )
    figure.atlas_rows = rows
    return figure


__all__ = ["bubble", "family_styles", "layers", "rf", "winners"]
