"""The numbers behind every chart, computed from the registry and the analyser (never typed in).

Kept apart from the drawing so that tests, the HTML atlas and the charts read the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from cnnatlas.analysis.graph import layer_kind
from cnnatlas.errors import InputError


@dataclass(frozen=True)
class LayerShares:
    """The three conclusions the notes draw from the AlexNet and VGG16 cost tables."""

    model: str
    fc_param_share: float  # parameters in fully connected layers / all parameters
    conv_mac_share: float  # MACs in convolutions / all MACs
    early_activation_share: float  # activation memory of layers in the first quarter of depth / all
    quarter_depth: int  # weighted layers counted as "the first quarter"

    def sentences(self) -> list[str]:
        return [
            f"{100 * self.early_activation_share:.0f}% of activation memory is in the first "
            f"{self.quarter_depth} weight layers (first quarter of depth)",
            f"{100 * self.fc_param_share:.0f}% of parameters are in fully connected layers",
            f"{100 * self.conv_mac_share:.0f}% of multiply-accumulates are in convolutions",
        ]


def layer_shares(analysis: Any) -> LayerShares:
    """Shares computed over every row of ``analysis`` (a cnnatlas.analysis.Analysis)."""
    rows = analysis.layers
    total_params = sum(r.params for r in rows) or 1
    total_macs = sum(r.macs for r in rows) or 1
    total_activation = sum(r.activation_bytes for r in rows) or 1
    depth = analysis.totals["network_depth"]
    quarter = max(1, math.floor(depth / 4))
    weighted_seen = 0
    early = 0
    for row in rows:
        if layer_kind(row) in ("conv", "fc") and row.params > 0:
            weighted_seen += 1
        if weighted_seen <= quarter:
            early += row.activation_bytes
    return LayerShares(
        model=analysis.model,
        fc_param_share=sum(r.params for r in rows if layer_kind(r) == "fc") / total_params,
        conv_mac_share=sum(r.macs for r in rows if layer_kind(r) == "conv") / total_macs,
        early_activation_share=early / total_activation,
        quarter_depth=quarter,
    )


def chart_layers(analysis: Any) -> list[Any]:
    """The rows a per-layer chart shows, in the network's order: convolutions, pooling and fully
    connected layers (activations, normalisation and reshapes are left to the table)."""
    return [r for r in analysis.layers if layer_kind(r) in ("conv", "fc", "pool")]


# -- the bubble chart ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BubblePoint:
    model: str
    family: str
    year: int
    macs: int  # multiply-accumulates of one forward pass at the model's own input size
    params: int
    top1_accuracy: float  # percent
    result: Any  # the cnnatlas.published.PublishedResult it comes from
    other_protocol: bool  # True: not a single-crop figure (drawn hollow)


def expand_models(patterns: Sequence[str] | None) -> list[str]:
    """Registered names matching names or fnmatch patterns, in the order given; an unknown
    name or a pattern matching nothing is an InputError."""
    from cnnatlas.registry import list_models, lookup

    if not patterns:
        return list_models()
    names: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = list_models(pattern)
            if not matched:
                raise InputError(f"no registered model matches {pattern!r}; run `cnnatlas models` for the list")
        else:
            lookup(pattern)  # raises InputError with suggestions
            matched = [pattern]
        names.extend(n for n in matched if n not in names)
    return names


def bubble_points(models: Sequence[str] | None = None, protocol: str = "1 crop") -> tuple[list[BubblePoint], list[str]]:
    """(points, names left out for want of a top-1 figure) for ImageNet-1k models.

    The accuracy is :func:`cnnatlas.published.select`'s choice (the requested protocol first,
    the paper before torchvision's metadata); MACs and parameters come from the analyser.
    """
    from cnnatlas.analysis import analyze
    from cnnatlas.published import matches_protocol, select
    from cnnatlas.registry import model_info

    names = expand_models(models)
    points: list[BubblePoint] = []
    left_out: list[str] = []
    for name in names:
        info = model_info(name)
        if info.dataset != "ImageNet-1k":
            if models:  # asked for by name: say why it is not drawn
                left_out.append(name)
            continue
        chosen = select(info.results, "top-1", "ImageNet-1k", protocol)
        if chosen is None:
            left_out.append(name)
            continue
        totals = analyze(name).totals
        points.append(
            BubblePoint(
                model=name,
                family=info.family,
                year=info.paper.year,
                macs=totals["macs"],
                params=totals["params"],
                top1_accuracy=chosen.accuracy,
                result=chosen,
                other_protocol=not matches_protocol(chosen, protocol),
            )
        )
    return points, left_out


# -- ILSVRC winners ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WinnerBar:
    year: int
    team: str
    place: int
    model: str
    depth: int  # weight layers of the registered network, from the analyser
    paper: str  # "Krizhevsky et al. 2012": the network's paper, cited for the entry's number
    top5_error: float
    entry: Any  # cnnatlas.published.CompetitionEntry
    extra: tuple[Any, ...]  # the same team's entries with outside training data


def winner_bars() -> list[WinnerBar]:
    """One bar per team and year (entries without outside data); outside-data entries ride along."""
    from cnnatlas.analysis import analyze
    from cnnatlas.published import ILSVRC_ENTRIES
    from cnnatlas.registry import lookup

    bars: list[WinnerBar] = []
    depths: dict[str, int] = {}
    for entry in ILSVRC_ENTRIES:
        if entry.outside_data:
            continue
        if entry.model not in depths:
            depths[entry.model] = analyze(entry.model).totals["network_depth"]
        extra = tuple(e for e in ILSVRC_ENTRIES if e.outside_data and e.year == entry.year and e.team == entry.team)
        paper = lookup(entry.model).info.paper
        bars.append(
            WinnerBar(
                entry.year,
                entry.team,
                entry.place,
                entry.model,
                depths[entry.model],
                f"{paper.short()} {paper.year}",
                entry.result.error,
                entry,
                extra,
            )
        )
    return sorted(bars, key=lambda b: (b.year, b.place))


# -- receptive fields -----------------------------------------------------------------------------


def rf_rows(analysis: Any) -> list[Any]:
    """Rows where the receptive field or the jump changes (convolutions, pooling), in order."""
    shown: list[Any] = []
    last = (None, None)
    for row in analysis.layers:
        key = (row.receptive_field, row.jump)
        if layer_kind(row) in ("conv", "pool") and row.receptive_field and key != last:
            shown.append(row)
            last = key
    return shown


def families(points: Iterable[Any]) -> list[str]:
    return sorted({p.family for p in points})


__all__ = [
    "BubblePoint",
    "LayerShares",
    "WinnerBar",
    "bubble_points",
    "chart_layers",
    "expand_models",
    "families",
    "layer_kind",
    "layer_shares",
    "rf_rows",
    "winner_bars",
]
