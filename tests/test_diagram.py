"""Architecture diagrams drawn from the analyser's trace (cnnatlas.analysis.graph)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import cnnatlas
from cnnatlas.analysis.graph import layer_graph
from cnnatlas.cli import main
from cnnatlas.plot import diagram as diagram_module

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is missing: install the Debian package 'graphviz'"
)


def _by_name(graph):
    return {n.name: n for n in graph.nodes}


def test_full_depth_has_one_node_per_traced_layer() -> None:
    graph = layer_graph("googlenet")
    rows = cnnatlas.analyze("googlenet").layers
    assert [n.name for n in graph.layer_nodes] == [r.name for r in rows]
    ids = {n.id for n in graph.nodes}
    assert all(e.source in ids and e.target in ids for e in graph.edges)
    # every layer is reachable from the input
    reached, frontier = {"input"}, ["input"]
    while frontier:
        for nxt in graph.successors(frontier.pop()):
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached >= {n.id for n in graph.layer_nodes if n.type not in ("Dropout",)} | {"output"}


def test_inception_3a_is_four_parallel_paths_joined_by_one_concat() -> None:
    graph = layer_graph("googlenet")
    nodes = _by_name(graph)
    joins = [n for n in graph.layer_nodes if n.name.startswith("inception_3a") and n.type == "cat"]
    assert len(joins) == 1
    branches = graph.predecessors(joins[0].id)
    assert len(branches) == 4 and len(set(branches)) == 4
    # Szegedy et al. 2015 Fig. 2(b): 1×1, 3×3 reduce, 5×5 reduce and the pool branch all read pool2's output
    (source,) = {s for s in graph.predecessors(nodes["inception_3a/1x1"].id)}
    starts = {nodes[name].id for name in ("inception_3a/1x1", "inception_3a/3x3_reduce", "inception_3a/5x5_reduce")}
    assert starts <= set(graph.successors(source)) and len(graph.successors(source)) == 4


def test_residual_additions_and_projection_shortcuts() -> None:
    graph = layer_graph("resnet50")
    nodes = _by_name(graph)
    add = nodes["conv2_1.add"]
    sources = {next(n.name for n in graph.nodes if n.id == s) for s in graph.predecessors(add.id)}
    # He et al. 2016 Fig. 5 right + projection shortcut (option B) at the first block of a stage
    assert len(sources) == 2 and any("downsample" in s for s in sources)
    assert len(graph.predecessors(nodes["conv2_2.add"].id)) == 2


def test_dense_concatenations_and_fractal_joins() -> None:
    dense = layer_graph("densenet40_k12")
    nodes = _by_name(dense)
    # Huang et al. 2017 eq. 2: layer ℓ reads the concatenation of all ℓ earlier outputs of its block
    assert [len(dense.predecessors(nodes[f"dense_block1.layer{i}.cat"].id)) for i in (2, 3, 4)] == [2, 3, 4]
    fractal = layer_graph("fractalnet20")
    joins = [n for n in fractal.layer_nodes if n.name.startswith("features.block1.join")]
    # Larsson et al. 2017 Fig. 1, C = 3: the block's joins merge 2 and then 3 columns
    assert sorted(len(fractal.predecessors(j.id)) for j in joins) == [2, 3]
    assert all(j.kind == "merge" for j in joins)


def test_resnet50_at_depth_one_has_one_node_per_stage() -> None:
    graph = layer_graph("resnet50", depth=1)
    names = [n.name for n in graph.layer_nodes]
    stages = [n for n in names if n.startswith("conv") and n.endswith("_x")]
    assert stages == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    full = cnnatlas.analyze("resnet50")
    stage = _by_name(graph)["conv3_x"]
    assert stage.members == sum(1 for r in full.layers if r.name.startswith("conv3_"))
    assert stage.params == sum(r.params for r in full.layers if r.name.startswith("conv3_"))
    # the stages form a chain
    ids = [_by_name(graph)[s].id for s in stages]
    assert all(b in graph.successors(a) for a, b in zip(ids, ids[1:]))


def test_alexnet_2012_shows_two_towers_and_cross_tower_layers() -> None:
    graph = layer_graph("alexnet_2012")
    nodes = _by_name(graph)
    # Krizhevsky et al. 2012 Fig. 2: conv2, conv4, conv5 read only their own GPU's maps; conv3
    # and the FC layers read both.
    assert [nodes[n].towers for n in ("conv2", "conv4", "conv5")] == [2, 2, 2]
    assert [nodes[n].towers for n in ("conv1", "conv3", "fc6")] == [1, 1, 1]
    assert set(graph.successors(nodes["norm1.split"].id)) == {nodes["norm1.norm"].id, nodes["norm1.norm_1"].id}
    dot = graph.to_dot()
    assert dot.count("tower 2<br/>") >= 3 and "(both towers)" in dot


def test_any_module_through_the_api() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x) + x)

    graph = layer_graph(nn.Sequential(nn.Conv2d(3, 4, 1), Block()), input_size=(3, 8, 8))
    names = [n.name for n in graph.layer_nodes]
    assert names == ["0", "1.conv", "1.add", "1.relu"]
    add = _by_name(graph)["1.add"]
    assert {next(n.name for n in graph.nodes if n.id == s) for s in graph.predecessors(add.id)} == {"0", "1.conv"}
    assert [e.shape for e in graph.edges if e.target == add.id] == [[1, 4, 8, 8], [1, 4, 8, 8]]


def test_dot_format_needs_no_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(diagram_module, "graphviz_available", lambda: False)
    out = tmp_path / "lenet5.dot"
    assert main(["diagram", "lenet5", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith('digraph "lenet5"') and "C1 · 6 5×5" in text
    capsys.readouterr()
    assert main(["diagram", "lenet5", "--out", str(tmp_path / "lenet5.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err and "--format dot" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.dot"]


def test_cli_takes_any_model_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's file (FILE.py:NAME with --model-option) is drawn like a registered model, and the
    default output name is a plain file name, not the source with its colon."""
    (tmp_path / "user_net.py").write_text(
        "from torch import nn\n"
        "def make(width=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Conv2d(width, 2, 1))\n"
    )
    monkeypatch.chdir(tmp_path)
    argv = ["diagram", "user_net.py:make", "--model-option", "width=6", "--input", "3x8x8", "--format", "dot"]
    assert main(argv) == 0
    dot = (tmp_path / "user_net.py_make.dot").read_text()
    assert "6×6×6" in dot and "6×6×2" in dot  # the first conv's 6 channels, the second's 2, on a 6×6 map


@needs_dot
def test_render_svg_and_depth(tmp_path: Path) -> None:
    out = tmp_path / "resnet18.svg"
    assert main(["diagram", "resnet18", "--depth", "1", "--out", str(out)]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "conv3_x" in svg
    assert diagram_module.render(layer_graph("lenet5"), "png")[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv", [["diagram", "nope"], ["diagram", "lenet5", "--format", "gif"], ["diagram", "lenet5", "--out", "x.jpg"]]
)
def test_diagram_bad_input(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
