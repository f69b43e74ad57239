"""Everything one atlas page shows about one model, computed once (in a worker process).

A record is plain JSON-ready data: registry metadata, the analyser's rows and totals, the three
conclusions, receptive-field growth, published results, the default recipe, and the diagram
(Graphviz SVG, or the DOT source when `dot` is missing).
"""

from __future__ import annotations

import time
from typing import Any

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


def model_record(name: str, render_diagrams: bool = True) -> dict[str, Any]:
    """The page data of one registered model (see the module docstring)."""
    from cnnatlas.analysis.graph import layer_graph, layer_kind
    from cnnatlas.plot.data import chart_layers, layer_shares, rf_rows
    from cnnatlas.plot.diagram import render
    from cnnatlas.published import matches_protocol, select
    from cnnatlas.registry import model_info

    started = time.perf_counter()
    info = model_info(name)
    graph = layer_graph(name)
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
    recipe = None
    if info.default_recipe:
        from cnnatlas.train.recipes import get_recipe

        recipe = get_recipe(info.default_recipe).to_dict()
    chosen = {
        metric: select(info.results, metric, info.dataset) for metric in ("top-1", "top-5")
    }  # the compare/bubble choice
    return {
        "name": name,
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
        "input_size": list(info.input_size),
        "min_input_size": info.min_input_size,
        "torchvision": info.torchvision_name,
        "default_recipe": info.default_recipe,
        "recipe": recipe,
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
        "diagram": {
            "svg": diagram_svg,
            "dot": drawn.to_dot(),
            "depth": depth,
            "nodes": len(drawn.layer_nodes),
            "error": diagram_error,
        },
        "seconds": time.perf_counter() - started,
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


__all__ = ["MAX_DIAGRAM_EDGES", "MAX_DIAGRAM_NODES", "diagram_for_page", "model_record", "winners_record"]
