"""Everything one atlas page shows about one model, computed once (in a worker process for a
registered model; in the building process for a source it has already resolved).

A record is plain JSON-ready data: registry metadata, the analyser's rows and totals, the three
conclusions, receptive-field growth, published results, the default recipe, and the diagram
(Graphviz SVG, or the DOT source when `dot` is missing).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Sequence

from cnnatlas.sources import ResolvedModel, resolve_source, source_kind

# Graphviz lays out a few hundred nodes in seconds; bigger networks (ResNet-1202) are drawn
# with their blocks collapsed to the deepest module level that stays under this many nodes.
# Dense wiring costs the layout more than nodes do, hence a budget on edges too.
MAX_DIAGRAM_NODES = 160
MAX_DIAGRAM_EDGES = 240
RENDER_TIMEOUT_S = 60  # a page whose layout takes longer shows the DOT source instead


def _fits(graph: Any) -> bool:
    return len(graph.layer_nodes) <= MAX_DIAGRAM_NODES and len(graph.edges) <= MAX_DIAGRAM_EDGES


def diagram_for_page(graph: Any) -> tuple[Any, int | None]:
    """(graph to draw, depth it was collapsed to or None for every layer)."""
    if _fits(graph):
        return graph, None
    for depth in (4, 3, 2):
        collapsed = graph.collapse(depth)
        if _fits(collapsed):
            return collapsed, depth
    return graph.collapse(1), 1


def page_name(source: str) -> str:
    """The file name (without .html) of a model's page: a registered name as it is; any other
    source (``torchvision:NAME``, ``dir/file.py:NAME`` → ``file:NAME``, ``package.module:NAME``)
    with every character outside ``[A-Za-z0-9_.]`` replaced by "-", so it never collides with a
    registered name."""
    kind = source_kind(source)
    if kind == "registered":
        return source
    if kind == "file":  # the file's name, not its whole path
        location, _, attribute = source.rpartition(":")
        source = f"{Path(location).stem}:{attribute}"
    return re.sub(r"[^A-Za-z0-9_.]+", "-", source).strip("-.") or "model"


def model_record(
    source: str,
    render_diagrams: bool = True,
    input_size: Sequence[int] | None = None,
    resolved: ResolvedModel | None = None,
) -> dict[str, Any]:
    """The page data of one model: a registered name, or any model source (see
    :mod:`cnnatlas.sources`), which gets the analysis without a paper, results or recipe.
    ``input_size`` applies to sources that do not declare their own (default 3×224×224);
    ``resolved`` is the source already resolved (on the meta device), so its code is not run again."""
    started = time.perf_counter()
    if source_kind(source) == "registered":
        record, size = _registered_metadata(source), None  # at the input its paper used
    else:
        record = _source_metadata(source, resolved)
        size = record.pop("declared_input") or input_size
    from cnnatlas.analysis.graph import layer_graph

    graph = layer_graph(record.pop("model"), size)
    record["input_size"] = list(graph.analysis.input_shape[1:])
    record.update(_analysis_fields(graph, render_diagrams))
    record["seconds"] = time.perf_counter() - started
    return record


def _registered_metadata(name: str) -> dict[str, Any]:
    from cnnatlas.published import matches_protocol, select
    from cnnatlas.registry import model_info

    info = model_info(name)
    recipe = None
    if info.default_recipe:
        from cnnatlas.train.recipes import get_recipe

        recipe = get_recipe(info.default_recipe).to_dict()
    chosen = {
        metric: select(info.results, metric, info.dataset) for metric in ("top-1", "top-5")
    }  # the compare/bubble choice
    return {
        "name": name,
        "model": name,
        "registered": True,
        "page": page_name(name),
        "family": info.family,
        "description": info.description,
        "paper": {
            "cite": info.paper.cite(),
            "short": f"{info.paper.short()} {info.paper.year}",
            "year": info.paper.year,
            "url": info.paper.url,
        },
        "dataset": info.dataset,
        "num_classes": info.num_classes,
        "min_input_size": info.min_input_size,
        "torchvision": info.torchvision_name,
        "default_recipe": info.default_recipe,
        "recipe": recipe,
        "results": [
            {
                "metric": r.metric,
                "error": r.error,
                "accuracy": r.accuracy,
                "dataset": r.dataset,
                "split": r.split,
                "protocol": r.protocol,
                "models": r.models,
                "setting": r.setting,
                "source": r.source,
                "reference": r.reference or f"{info.paper.short()} {info.paper.year}",
            }
            for r in info.results
        ],
        "chosen": {
            metric: None
            if r is None
            else {
                "error": r.error,
                "accuracy": r.accuracy,
                "protocol": r.protocol,
                "other_protocol": not matches_protocol(r, "1 crop"),
                "source": f"{r.reference or info.paper.short() + ' ' + str(info.paper.year)}, {r.source}",
            }
            for metric, r in chosen.items()
        },
    }


def _source_metadata(source: str, resolved: ResolvedModel | None) -> dict[str, Any]:
    """A torchvision model or the user's own network: what its source tells, nothing invented."""
    if resolved is None:
        resolved = resolve_source(source, meta=True)
    kind = {"torchvision": "torchvision", "file": "your file", "module": "your module"}[resolved.kind]
    return {
        "name": resolved.name,
        "model": resolved.model,
        "registered": False,
        "declared_input": resolved.input_size,
        "page": page_name(source),
        "family": resolved.kind,
        "description": f"{type(resolved.model).__name__} from {kind} ({source}), analysed without weights",
        "paper": {"cite": "", "short": "", "year": None, "url": ""},
        "dataset": "",
        "num_classes": None,
        "min_input_size": None,
        "torchvision": source.split(":", 1)[1] if resolved.kind == "torchvision" else None,
        "default_recipe": None,
        "recipe": None,
        "results": [],
        "chosen": {"top-1": None, "top-5": None},
    }


def _analysis_fields(graph: Any, render_diagrams: bool) -> dict[str, Any]:
    """The analyser's part of a page: totals, layers, chart data, receptive field, diagram."""
    from cnnatlas.analysis.graph import layer_kind
    from cnnatlas.plot.data import chart_layers, layer_shares, rf_rows
    from cnnatlas.plot.diagram import render

    analysis = graph.analysis
    shares = layer_shares(analysis)
    drawn, depth = diagram_for_page(graph)
    diagram_svg = None
    diagram_error = None
    if render_diagrams:
        try:
            diagram_svg = render(drawn, "svg", timeout=RENDER_TIMEOUT_S).decode()
            diagram_svg = diagram_svg[diagram_svg.find("<svg") :]  # inline: drop the XML prolog and DOCTYPE
        except Exception as exc:  # Graphviz missing or failing: the page keeps the DOT source
            diagram_error = str(exc)
    return {
        "totals": dict(analysis.totals),
        "layers": [
            {
                "name": r.name,
                "type": r.type,
                "spec": r.spec,
                "output": r.output_shape[1:],
                "params": r.params,
                "macs": r.macs,
                "activation_bytes": r.activation_bytes,
                "rf": r.receptive_field,
                "jump": r.jump,
                "kind": layer_kind(r),
            }
            for r in analysis.layers
        ],
        "chart_layers": [r.name for r in chart_layers(analysis)],
        "shares": {
            "fc_param_share": shares.fc_param_share,
            "conv_mac_share": shares.conv_mac_share,
            "early_activation_share": shares.early_activation_share,
            "sentences": shares.sentences(),
        },
        "rf": [{"name": r.name, "rf": r.receptive_field, "jump": r.jump} for r in rf_rows(analysis)],
        "diagram": {
            "svg": diagram_svg,
            "dot": drawn.to_dot(),
            "depth": depth,
            "nodes": len(drawn.layer_nodes),
            "error": diagram_error,
        },
    }


def winners_record() -> list[dict[str, Any]]:
    from cnnatlas.plot.data import winner_bars

    return [
        {
            "year": b.year,
            "team": b.team,
            "place": b.place,
            "model": b.model,
            "depth": b.depth,
            "error": b.top5_error,
            "source": ", ".join(
                (b.entry.result.reference or b.paper, b.entry.result.source, b.entry.result.ensemble_text())
            ),
            "extra": [{"error": e.result.error, "note": e.outside_data} for e in b.extra],
        }
        for b in winner_bars()
    ]


__all__ = ["MAX_DIAGRAM_EDGES", "MAX_DIAGRAM_NODES", "diagram_for_page", "model_record", "page_name", "winners_record"]
