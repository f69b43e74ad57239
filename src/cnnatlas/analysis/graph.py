"""Architecture diagrams from the analyser's trace: which layer feeds which, with the shapes.

:class:`GraphTracer` is the analyser's :class:`~cnnatlas.analysis.trace.Tracer` plus one
bookkeeping step per op: it remembers which row produced each tensor and, when a row reads a
tensor another row produced, records the edge (producer → consumer, tensor shape). Views and
bookkeeping ops that make no row pass their producer on; an in-place op (``relu_``, the residual
``out += identity``) becomes the producer of the tensor it overwrote. :func:`analyze` itself
keeps the plain tracer, so its speed is unchanged.

:func:`layer_graph` returns a :class:`LayerGraph`: one node per traced row (the ``summary``
rows), input and output nodes, and the edges; :meth:`LayerGraph.collapse` merges everything below
a module depth into one node per module (a ResNet stage at depth 1), and :meth:`LayerGraph.to_dot`
writes Graphviz source in the notes' style ("conv1 · 96 11×11 /4 · 55×55×96").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from cnnatlas.analysis import rules
from cnnatlas.analysis.trace import Tracer, TraceResult

INPUT_ID = "input"
OUTPUT_ID = "output"
# Grouped convolutions with this few groups are the towers of a network split across devices
# (AlexNet 2012's two GPUs); more groups (ResNeXt's 32, depthwise) are one layer's structure.
MAX_TOWERS = 4
# Per-channel layers keep a tower split they receive.
_TOWER_PRESERVING = ("relu", "dropout", "pool", "batchnorm", "tanh")


class GraphTracer(Tracer):
    """A :class:`Tracer` that also records producer → consumer edges between rows."""

    INPUT = -1

    def __init__(self, model: nn.Module, state: dict[str, Tensor] | None, names: dict[str, str]) -> None:
        super().__init__(model, state, names)
        self.producer: dict[int, int] = {}  # id(tensor) → row index (tensors kept alive by the base)
        self.edges: dict[tuple[int, int], tuple[int, ...]] = {}

    def run(self, args: tuple[Tensor, ...], kwargs: dict[str, Tensor]) -> TraceResult:
        for x in (*args, *kwargs.values()):
            self.producer[id(x)] = self.INPUT
        result = super().run(args, kwargs)
        end = len(self.rows)
        for t in _flat(result.output):
            source = self.producer.get(id(t))
            if source is not None:
                self.edges.setdefault((source, end), tuple(t.shape))
        return replace(result, edges=[(a, b, shape) for (a, b), shape in self.edges.items()])

    def on_op(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        rows_before = len(self.rows)
        super().on_op(func, args, kwargs, out)
        if func.namespace != "aten":
            return
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.leaf:
            row = frame.first_row  # a leaf call's row is opened when the call starts
        elif len(self.rows) > rows_before:
            row = len(self.rows) - 1  # the functional row this op just made
        else:
            row = None  # bookkeeping op without a row: pass the producer through
        inputs = rules.op_tensors(args, kwargs)
        outputs = rules.out_tensors(out)
        producer = self.producer
        if row is None:
            source = next((producer[id(t)] for t in inputs if id(t) in producer), None)
            if source is not None:
                for t in outputs:
                    producer[id(t)] = source
            return
        for t in inputs:
            source = producer.get(id(t))
            if source is not None and source != row:
                self.edges.setdefault((source, row), tuple(t.shape))
        for t in outputs:
            producer[id(t)] = row

    def on_module_end(self, path: str, module: nn.Module, args: Any, out: Any) -> None:
        frame = self.stack[-1] if self.stack and self.stack[-1].module is module else None
        super().on_module_end(path, module, args, out)
        if frame is None or not frame.leaf:
            return
        row = frame.first_row
        for t in _flat(out):
            source = self.producer.get(id(t))
            if source is not None and source != row:
                # A layer that ran no op on it (eval-mode dropout, Identity) hands its input on.
                self.edges.setdefault((source, row), tuple(t.shape))
                self.producer[id(t)] = row


def _flat(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flat(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _flat(item)]
    return []


@dataclass
class GraphNode:
    id: str
    name: str
    type: str
    spec: str
    output_shape: list[int]
    params: int = 0
    macs: int = 0
    activation_bytes: int = 0
    kind: str = "other"  # conv, fc, pool, merge (add/cat), io, module (collapsed), other
    towers: int = 1
    members: int = 1  # traced rows behind this node
    path: str = ""
    depth: int = 0

    def label_lines(self) -> list[str]:
        """The notes' style: "conv1 · 96 11×11 /4" then "55×55×96"."""
        first = self.name if not self.spec or self.spec == self.type else f"{self.name} · {self.spec}"
        lines = [first]
        if self.output_shape:
            lines.append(shape_text(self.output_shape))
        if self.members > 1:
            lines.append(f"{self.members} layers · {self.params / 1e6:.2f}M params · {self.macs / 1e9:.2f} G-MACs")
        return lines


@dataclass
class GraphEdge:
    source: str
    target: str
    shape: list[int]


@dataclass
class LayerGraph:
    """Nodes (traced rows, or modules after :meth:`collapse`) and the tensors between them."""

    model: str
    input_shape: list[int]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    analysis: Any = field(default=None, repr=False)  # the cnnatlas.analysis.Analysis it came from
    row_paths: list[tuple[str, int]] = field(default_factory=list, repr=False)  # per layer node: (path, depth)

    @property
    def layer_nodes(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.kind != "io"]

    def node(self, name: str) -> GraphNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"{self.model} diagram has no node {name!r}")

    def predecessors(self, node_id: str) -> list[str]:
        return [e.source for e in self.edges if e.target == node_id]

    def successors(self, node_id: str) -> list[str]:
        return [e.target for e in self.edges if e.source == node_id]

    def collapse(self, depth: int) -> "LayerGraph":
        """One node per module at nesting ``depth`` (rows deeper than it merge into it)."""
        if depth < 1:
            raise ValueError("depth must be at least 1")
        analysis = self.analysis
        group_of: dict[str, str] = {}
        groups: dict[str, list[GraphNode]] = {}
        order: list[str] = []
        for node in self.nodes:
            if node.kind == "io" or node.depth <= depth:
                key = node.id
            else:
                key = "m:" + ".".join(node.path.split(".")[:depth])
            group_of[node.id] = key
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(node)
        nodes: list[GraphNode] = []
        new_id: dict[str, str] = {}
        for index, key in enumerate(order):
            members = groups[key]
            if len(members) == 1 and not key.startswith("m:"):
                node = replace(members[0])
            else:
                path = key[2:]
                names = analysis.module_names if analysis is not None else {}
                types = analysis.module_types if analysis is not None else {}
                node = GraphNode(
                    id="",
                    name=names.get(path, path),
                    type=types.get(path, "module"),
                    spec=types.get(path, "module"),
                    output_shape=members[-1].output_shape,
                    params=sum(m.params for m in members),
                    macs=sum(m.macs for m in members),
                    activation_bytes=sum(m.activation_bytes for m in members),
                    kind="module",
                    members=sum(m.members for m in members),
                    path=path,
                    depth=depth,
                )
            node.id = node.id if node.kind == "io" else f"n{index}"
            new_id[key] = node.id
            nodes.append(node)
        edges: dict[tuple[str, str], list[int]] = {}
        for edge in self.edges:
            a, b = new_id[group_of[edge.source]], new_id[group_of[edge.target]]
            if a != b:
                edges.setdefault((a, b), edge.shape)
        return LayerGraph(
            self.model,
            self.input_shape,
            nodes,
            [GraphEdge(a, b, s) for (a, b), s in edges.items()],
            analysis,
        )

    def to_dot(self, rankdir: str = "TB", edge_labels: bool | None = None) -> str:
        """Graphviz source: boxes for convolutions, other shapes for pooling, FC, merges.

        Edges carry their tensor shape unless ``edge_labels`` is False; by default labels are
        left out of densely connected graphs (DenseNet blocks), where they would cost Graphviz
        minutes of layout and hide the wiring."""
        if edge_labels is None:
            edge_labels = len(self.edges) <= 2 * len(self.nodes) + 20
        title = f"{self.model} · input {shape_text(self.input_shape)} · cnnatlas diagram from the analyser trace"
        lines = [
            f'digraph "{_escape(self.model)}" {{',
            f'  graph [rankdir={rankdir}, fontname="Helvetica", fontsize=11, nodesep=0.25, ranksep=0.3,'
            f' label="{_escape(title)}", labelloc=t];',
            '  node [fontname="Helvetica", fontsize=10, style="filled", margin="0.08,0.03"];',
            '  edge [fontname="Helvetica", fontsize=8, color="#555555", arrowsize=0.6];',
        ]
        for node in self.nodes:
            lines.append(f"  {node.id} [{_node_attributes(node)}];")
        by_id = {n.id: n for n in self.nodes}
        for edge in self.edges:
            label = shape_text(edge.shape)
            extra = ""
            source, target = by_id[edge.source], by_id[edge.target]
            reads_all = target.kind in ("conv", "fc") or target.type in ("view", "flatten", "reshape")
            if source.towers > 1 and target.towers == 1 and reads_all:
                label += " (both towers)"  # a layer that reads every tower: the cross-tower connection
                extra = ", style=bold"
            attributes = f'label="{_escape(label)}"{extra}' if edge_labels else extra.lstrip(", ")
            lines.append(f"  {edge.source} -> {edge.target} [{attributes}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


_STYLE = {
    "conv": 'shape=box, fillcolor="#dbe6f6"',
    "fc": 'shape=box, fillcolor="#f8dcc4", peripheries=2',
    "pool": 'shape=invhouse, fillcolor="#e4e4e4"',
    "merge": 'shape=ellipse, fillcolor="#fff2b3"',
    "io": 'shape=oval, fillcolor="#ffffff"',
    "module": 'shape=box3d, fillcolor="#e2f0d9"',
    "other": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
}


def _node_attributes(node: GraphNode) -> str:
    style = _STYLE.get(node.kind, _STYLE["other"])
    tooltip = f'tooltip="{_escape(node.name)}: {node.params:,} params, {node.macs:,} MACs"'
    if node.towers > 1:
        # A table with one cell per tower under the layer's name: the towers side by side.
        title = _html(node.label_lines()[0])
        shape = node.output_shape[:]
        if len(shape) >= 2:
            shape[1] //= node.towers
        cells = "".join(
            f'<td bgcolor="#dbe6f6">tower {i + 1}<br/>{_html(shape_text(shape))}</td>' for i in range(node.towers)
        )
        label = (
            f'<<table border="0" cellborder="1" cellspacing="2"><tr><td colspan="{node.towers}">{title}</td></tr>'
            f"<tr>{cells}</tr></table>>"
        )
        return f'shape=plain, label={label}, class="towers", {tooltip}'
    label = "\\n".join(_escape(line) for line in node.label_lines())
    return f'{style}, label="{label}", {tooltip}'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shape_text(shape: Sequence[int]) -> str:
    """The notes' H×W×C for feature maps (batch dropped), the plain length for vectors."""
    dims = list(shape)
    if len(dims) == 4:
        return f"{dims[2]}×{dims[3]}×{dims[1]}"
    if len(dims) == 3:
        return f"{dims[1]}×{dims[2]}×{dims[0]}"
    if len(dims) == 2:
        return str(dims[1])
    return "×".join(map(str, dims))


def short_spec(spec: str) -> str:
    """ "96 11×11 filters, stride 4, pad 0" → "96 11×11 /4" (the notes' shorthand)."""
    text = spec.replace(" filters", "")
    text = re.sub(r", stride (\d+)", lambda m: "" if m.group(1) == "1" else f" /{m.group(1)}", text)
    text = re.sub(r", pad \d+(×\d+)?", "", text)
    return text


def layer_kind(row: Any) -> str:
    """ "conv", "fc", "pool" or "other" for an analysis row (cnnatlas.analysis.LayerRow).

    Convolutions are module or functional convolutions; fully connected layers are ``Linear``
    (or its ``addmm``/``linear`` ops) and any other layer with weights and a flat output (LeNet-5's
    RBF output layer); pooling includes LeNet-5's trainable subsampling.
    """
    kind = row.type.lower()
    if "conv" in kind:
        return "conv"
    if kind in ("linear", "addmm", "mm", "matmul") or (row.params > 0 and len(row.output_shape) == 2):
        return "fc"
    if "pool" in kind or "subsampling" in kind:
        return "pool"
    return "other"


def _kind(row: Any) -> str:
    kind = layer_kind(row)
    if kind != "other":
        return kind
    if row.type.lower() in ("cat", "add", "stack", "mean", "join"):  # concatenations, sums, fractal joins
        return "merge"
    return "other"


def layer_graph(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
    depth: int | None = None,
    **model_kwargs: Any,
) -> LayerGraph:
    """The diagram graph of a registered model (by name) or any ``nn.Module``, from one traced
    forward pass at batch 1 (the same trace as :func:`cnnatlas.analyze`, whose result is kept in
    ``.analysis``); ``depth`` collapses deeper modules into one node each."""
    from cnnatlas.analysis import _analyze_traced

    analysis, result = _analyze_traced(
        model_or_name, input_size, 1, dtype, None, None, "momentum", model_kwargs, GraphTracer
    )
    rows = analysis.layers
    nodes = [GraphNode(INPUT_ID, "input", "input", "", list(analysis.input_shape), kind="io")]
    for index, row in enumerate(rows):
        nodes.append(
            GraphNode(
                id=f"n{index}",
                name=row.name,
                type=row.type,
                spec=short_spec(row.spec),
                output_shape=row.output_shape,
                params=row.params,
                macs=row.macs,
                activation_bytes=row.activation_bytes,
                kind=_kind(row),
                towers=_groups(row.spec),
                path=row.path,
                depth=row.depth,
            )
        )
    output_shape = list(rows[-1].output_shape) if rows else []
    nodes.append(GraphNode(OUTPUT_ID, "output", "output", "", output_shape, kind="io"))

    def node_id(index: int) -> str:
        return INPUT_ID if index < 0 else (OUTPUT_ID if index >= len(rows) else f"n{index}")

    edges = [GraphEdge(node_id(a), node_id(b), list(shape)) for a, b, shape in (result.edges or [])]
    graph = LayerGraph(analysis.model, list(analysis.input_shape), nodes, edges, analysis)
    _spread_towers(graph)
    return graph.collapse(depth) if depth is not None else graph


def _groups(spec: str) -> int:
    match = re.search(r"(\d+) groups", spec)
    groups = int(match.group(1)) if match else 1
    return groups if 2 <= groups <= MAX_TOWERS else 1


def _spread_towers(graph: LayerGraph) -> None:
    """Per-channel layers fed only by a tower-split layer are split the same way."""
    by_id = {n.id: n for n in graph.nodes}
    incoming: dict[str, list[str]] = {}
    for edge in graph.edges:
        incoming.setdefault(edge.target, []).append(edge.source)
    for node in graph.nodes:  # rows are in execution order, so producers come first
        sources = incoming.get(node.id, [])
        if node.towers == 1 and len(sources) == 1 and any(k in node.type.lower() for k in _TOWER_PRESERVING):
            node.towers = by_id[sources[0]].towers


__all__ = [
    "layer_kind",
    "GraphEdge",
    "GraphNode",
    "GraphTracer",
    "LayerGraph",
    "layer_graph",
    "shape_text",
    "short_spec",
]
