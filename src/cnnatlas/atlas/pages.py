"""The atlas's HTML pages: plain strings, escaped, with their data embedded as JSON (a page
opened from ``file://`` cannot fetch a neighbouring JSON file, so nothing is fetched at all)."""

from __future__ import annotations

import json
import shlex
from html import escape
from typing import Any, Iterable, Sequence

from cnnatlas.analysis.render import human, human_bytes

KIND_NAME = {"conv": "convolution", "pool": "pooling", "fc": "fully connected"}


def _json(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def page(title: str, body: str, prefix: str, has_questions: bool, data: Sequence[str] = ()) -> str:
    """A whole page; ``prefix`` leads back to the site root ("" or "../")."""
    questions = f'<a href="{prefix}questions.html">Questions</a>' if has_questions else ""
    from cnnatlas import __version__

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · cnnatlas</title>
<link rel="stylesheet" href="{prefix}assets/atlas.css">
</head>
<body>
<header class="site"><nav><a href="{prefix}index.html">cnnatlas atlas</a><a href="{prefix}index.html#models">Models</a>\
<a href="{prefix}formulas.html">Formulas</a>{questions}</nav></header>
<main>
{body}
<footer>Built by cnnatlas {escape(__version__)} for offline reading: every number is computed by the analyser from the
registered model or read from the published-results table (cnnatlas.published) with its source.</footer>
</main>
<div id="tooltip" role="tooltip"></div>
{"".join(data)}
<script src="{prefix}assets/atlas.js"></script>
</body>
</html>
"""


def _table(headers: Sequence[tuple[str, bool]], rows: Iterable[Sequence[Any]], table_id: str, sortable: bool) -> str:
    """``headers``: (title, numeric); a cell is text or (text, sort value)."""
    head = "".join(f'<th class="{"num" if numeric else ""}" scope="col">{escape(h)}</th>' for h, numeric in headers)
    lines = []
    for row in rows:
        cells = []
        for (_, numeric), cell in zip(headers, row):
            shown, value = cell if isinstance(cell, tuple) else (cell, None)
            attr = f' data-value="{escape(str(value))}"' if value is not None else ""
            cells.append(f'<td class="{"num" if numeric else ""}"{attr}>{shown}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    cls = "sortable" if sortable else ""
    return f'<table id="{table_id}" class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def _result_cell(chosen: dict[str, Any] | None) -> tuple[str, Any]:
    if chosen is None:
        return "", ""
    mark = "*" if chosen["other_protocol"] else ""
    title = escape(f"{chosen['protocol']} — {chosen['source']}")
    return f'<span title="{title}">{chosen["error"]:g}{mark}</span>', chosen["error"]


# -- index ----------------------------------------------------------------------------------------
def index_page(
    records: list[dict[str, Any]], bubble: dict[str, Any], winners: list[dict[str, Any]], has_q: bool
) -> str:
    rows = []
    for r in records:
        t = r["totals"]
        rows.append(
            [
                f'<a href="models/{escape(r["page"])}.html">{escape(r["name"])}</a>',
                escape(r["family"]),
                (str(r["paper"]["year"] or "—"), r["paper"]["year"] or 0),
                escape(r["dataset"] or "—"),
                (f"{t['params'] / 1e6:.2f}M", t["params"]),
                (human(t["macs"]), t["macs"]),
                (human_bytes(t["activation_bytes"]), t["activation_bytes"]),
                (str(t["network_depth"]), t["network_depth"]),
                _result_cell(r["chosen"]["top-1"]),
                _result_cell(r["chosen"]["top-5"]),
                escape(
                    "; ".join(
                        dict.fromkeys(f"{c['protocol']}, {c['source']}" for c in r["chosen"].values() if c is not None)
                    )
                ),
            ]
        )
    headers = [
        ("model", False),
        ("family", False),
        ("year", True),
        ("data set", False),
        ("params", True),
        ("MACs", True),
        ("activations", True),
        ("depth", True),
        ("top-1 err %", True),
        ("top-5 err %", True),
        ("protocol and source", False),
    ]
    bubble_note = (
        f"{len(bubble['points'])} networks with a published ImageNet top-1 figure; hover a bubble for its numbers and "
        "source, click it for the network's page. Filled: single model, one crop; hollow: another protocol "
        "(10 crops, dense evaluation, or not stated)."
    )
    body = f"""<h1>The CNN atlas</h1>
<p class="lead">{len(records)} convolutional networks: costs from the analyser
(batch 1, float32, each network at its own input size), published results with their protocol and source.</p>
<h2 id="bubble-chart">Accuracy against operations</h2>
<p class="muted">Top-1 accuracy on ImageNet-1k (validation) against multiply-accumulates per image; bubble area is
proportional to the parameter count (after Canziani, Paszke &amp; Culurciello 2016, Fig. 2). {escape(bubble_note)}</p>
<div id="bubble" class="chart"></div>
<h2 id="winners-chart">ILSVRC winners</h2>
<p class="muted">Top-5 error of the winning classification entries (ensembles, test set) with the depth of the
network each is built from; the bar's tooltip names the source table.</p>
<div id="winners" class="chart"></div>
<h2 id="models">All models</h2>
<input class="filter" type="search" placeholder="filter: name, family, data set…" data-table="model-table"
 aria-label="filter the models">
<div class="scroll">{_table(headers, rows, "model-table", True)}</div>
<p class="muted">Error in percent, single model; * another protocol than one crop (see the cell's tooltip).
Click a column title to sort.</p>"""
    return page("Index", body, "", has_q, [_json("bubble-data", bubble), _json("winners-data", winners)])


# -- one model ---------------------------------------------------------------------------------------
def model_page(r: dict[str, Any], has_q: bool) -> str:
    name = escape(r["name"])
    t = r["totals"]
    paper = r["paper"]
    url = f' <a href="{escape(paper["url"])}" rel="noreferrer">{escape(paper["url"])}</a>' if paper["url"] else ""
    # a source's page was drawn at an input the commands must repeat; a registered model's is its default
    source = shlex.quote(r["name"]) + ("" if r["registered"] else " --input " + "x".join(map(str, r["input_size"])))
    diagram = r["diagram"]
    if diagram["svg"]:
        how = (
            "every traced layer"
            if diagram["depth"] is None
            else f"modules deeper than level {diagram['depth']} collapsed into one node each "
            f"(`cnnatlas diagram {source}` draws every layer)"
        )
        diagram_html = (
            f'<p class="muted">{diagram["nodes"]} nodes: {escape(how)}.</p><div class="diagram">{diagram["svg"]}</div>'
        )
    else:
        diagram_html = (
            f'<p class="muted">No picture: {escape(diagram["error"] or "diagrams were not rendered")}. '
            f"The Graphviz source follows.</p><pre>{escape(diagram['dot'])}</pre>"
        )
    layer_rows = [
        [
            escape(x["name"]),
            escape(x["type"]),
            escape(x["spec"]),
            escape("×".join(map(str, x["output"]))),
            (f"{x['params']:,}", x["params"]),
            (f"{x['macs']:,}", x["macs"]),
            (human_bytes(x["activation_bytes"]) if x["activation_bytes"] else "", x["activation_bytes"]),
            (str(x["rf"]), x["rf"]),
            (str(x["jump"]), x["jump"]),
        ]
        for x in r["layers"]
    ]
    layer_table = _table(
        [
            ("layer", False),
            ("type", False),
            ("spec", False),
            ("output", False),
            ("params", True),
            ("MACs", True),
            ("activations", True),
            ("RF", True),
            ("jump", True),
        ],
        layer_rows,
        "layer-table",
        True,
    )
    by_name = {x["name"]: x for x in r["layers"]}
    shown = [by_name[n] for n in r["chart_layers"]]
    charts = {
        "charts": [
            {
                "id": f"bars-{key}",
                "label": label,
                "unit": unit,
                "rows": [{"name": x["name"], "kind": x["kind"], "value": x[field] / scale} for x in shown],
            }
            for key, label, unit, field, scale in (
                ("activations", "activation memory", "MiB", "activation_bytes", 2**20),
                ("params", "parameters", "millions", "params", 1e6),
                ("macs", "multiply-accumulates", "G-MACs", "macs", 1e9),
            )
        ]
    }
    results = _table(
        [
            ("metric", False),
            ("error %", True),
            ("accuracy %", True),
            ("data", False),
            ("protocol", False),
            ("models", False),
            ("setting", False),
            ("source", False),
        ],
        [
            [
                escape(x["metric"]),
                (f"{x['error']:g}", x["error"]),
                (f"{x['accuracy']:g}", x["accuracy"]),
                escape(f"{x['dataset']} {x['split']}"),
                escape(x["protocol"]),
                escape("single" if x["models"] == 1 else ("ensemble" if x["models"] is None else f"{x['models']}")),
                escape(x["setting"]),
                escape(f"{x['reference']}, {x['source']}"),
            ]
            for x in r["results"]
        ],
        "results-table",
        True,
    )
    recipe = r["recipe"]
    recipe_html = (
        "<p class='muted'>No default recipe.</p>"
        if recipe is None
        else "<table>"
        + "".join(
            f"<tr><th scope='row'>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
            for k, v in recipe.items()
            if v not in (None, "", (), [])
        )
        + "</table>"
    )
    stem = r["page"]
    commands = [
        f"cnnatlas summary {source}",
        f"cnnatlas diagram {source} --out {stem}.svg",
        f"cnnatlas plot layers {source} --out {stem}-layers.png",
        f"cnnatlas plot rf {source} --out {stem}-rf.png",
    ]
    if r["default_recipe"]:
        commands += [
            f"cnnatlas train {r['name']} --recipe {r['default_recipe']} --out runs/{r['name']}",
            f"cnnatlas evaluate runs/{r['name']}",
        ]
    size = "×".join(map(str, r["input_size"]))
    paper_html = f"<b>Paper:</b> {escape(paper['cite'])}.{url}<br>" if paper["cite"] else ""
    dataset_html = f"{escape(r['dataset'])} ({r['num_classes']} classes)" if r["dataset"] else "—"
    body = f"""<h1>{name}</h1>
<p class="lead">{escape(r["description"])}</p>
<p>{paper_html}<b>Family:</b> {escape(r["family"])} · <b>input:</b> {size} · <b>data set:</b> {dataset_html}
· <b>torchvision:</b> {escape(r["torchvision"] or "—")}</p>
<p><b>{t["params"]:,}</b> parameters · <b>{human(t["macs"])}</b> MACs · <b>{human_bytes(t["activation_bytes"])}</b>
forward activations · depth <b>{t["network_depth"]}</b> weight layers · smallest input {r["min_input_size"] or "—"}</p>
<h2>Architecture</h2>
{diagram_html}
<h2>Cost per layer</h2>
<ul class="conclusions">{"".join(f"<li>{escape(s)}</li>" for s in r["shares"]["sentences"])}</ul>
<p class="legend"><span><i class="swatch" style="background:#4C72B0"></i>convolution</span>\
<span><i class="swatch" style="background:#8C8C8C"></i>pooling</span>\
<span><i class="swatch" style="background:#DD8452"></i>fully connected (outlined)</span></p>
<h3>Activation memory (MiB, batch 1, float32)</h3><div id="bars-activations" class="chart"></div>
<h3>Parameters (millions)</h3><div id="bars-params" class="chart"></div>
<h3>Multiply-accumulates (G-MACs)</h3><div id="bars-macs" class="chart"></div>
<h2>Receptive field</h2>
<p class="muted">Size of the input region that can affect one output (line, left axis) and the jump between
neighbouring outputs (dashed, right axis), layer by layer.</p>
<div id="rf" class="chart"></div>
<h2>Layers</h2>
<input class="filter" type="search" placeholder="filter layers…" data-table="layer-table" aria-label="filter layers">
<div class="scroll">{layer_table}</div>
<h2>Published results</h2>
{results if r["results"] else "<p class='muted'>No published result is registered for this network.</p>"}
<h2>Default training recipe{": " + escape(r["default_recipe"]) if r["default_recipe"] else ""}</h2>
{recipe_html}
<h2>Commands</h2>
<pre>{escape(chr(10).join(commands))}</pre>"""
    rf = {"rows": r["rf"], "input": r["input_size"][-1]}
    return page(r["name"], body, "../", has_q, [_json("layers-data", charts), _json("rf-data", rf)])


# -- formulas -------------------------------------------------------------------------------------------
def formulas_page(has_q: bool) -> str:
    from cnnatlas import formulas as f

    naive = f.inception_module_cost(28, 256, 128, 192, 96)
    reduced = f.inception_module_cost(28, 256, 128, 192, 96, reduce3=64, reduce5=64, pool_proj=64)
    stacked2, stacked3 = f.stacked_conv_params(1, 3, 2), f.stacked_conv_params(1, 3, 3)
    ratio = f.depthwise_separable_cost_ratio(512, 3)
    alex_224 = f"{(224 - 11) / 4 + 1:g}"
    rows = [
        (
            "Output size",
            "⌊(n + 2p − d(k−1) − 1)/s⌋ + 1",
            f"AlexNet conv1 on 227: {f.conv_output_size(227, 11, 4)}; pool1: {f.conv_output_size(55, 3, 2)}; "
            f"GoogLeNet 3×3/2 pool on 112: {f.conv_output_size(112, 3, 2)} (floor) vs "
            f"{f.conv_output_size(112, 3, 2, ceil_mode=True)} (ceil, Caffe)",
        ),
        (
            "Parameters",
            "k_h·k_w·(C_in/groups)·C_out (+ C_out biases)",
            f"AlexNet conv1: {f.conv_params(3, 96, 11, bias=False):,} weights, "
            f"{f.conv_params(3, 96, 11):,} with biases; "
            f"depthwise 3×3 on 512 channels: {f.conv_params(512, 512, 3, groups=512, bias=False):,}",
        ),
        ("MACs", "weights × output positions", f"VGG16 conv1_1: {f.conv_macs(3, 64, 3, 224):,}"),
        (
            "Stacked kernels",
            "n 3×3 layers see 1 + 2n pixels with 9n·C² weights",
            f"two 3×3: field {f.stacked_receptive_field(3, 2)}, {stacked2[0]}C² vs {stacked2[1]}C² for one 5×5; "
            f"three 3×3: field {f.stacked_receptive_field(3, 3)}, {stacked3[0]}C² vs {stacked3[1]}C² for one 7×7",
        ),
        (
            "Depthwise separable",
            "1/N + 1/D_K² of a full convolution (MobileNets eq. 5)",
            f"N = 512, 3×3: {ratio:.4f}, i.e. {1 / ratio:.2f}× cheaper",
        ),
    ]
    table = _table(
        [("quantity", False), ("formula", False), ("worked numbers (computed)", False)],
        [[escape(a), escape(b), escape(c)] for a, b, c in rows],
        "formulas-table",
        False,
    )
    terms = "".join(f"<tr><td>{escape(k)}</td><td class='num'>{v:,}</td></tr>" for k, v in reduced.terms.items())
    body = f"""<h1>Formulas</h1>
<p class="lead">The closed-form arithmetic of the lecture notes, computed by <code>cnnatlas.formulas</code> (each
function is tested against the analyser on real PyTorch modules; docs/formulas.md).</p>
{table}
<h2>The Inception example: naive against bottleneck</h2>
<p>A 28×28×256 input with 1×1/128, 3×3/192 and 5×5/96 branches and a 3×3 max pool ("same" padding).</p>
<ul>
<li>Naive module (Szegedy et al. 2015, Fig. 2a): <b>{naive.macs:,}</b> MACs, output
{"×".join(map(str, naive.output_shape))} (the pool passes all 256 channels through).</li>
<li>With 64-channel 1×1 reductions (Fig. 2b): <b>{reduced.macs:,}</b> MACs, output
{"×".join(map(str, reduced.output_shape))} — {naive.macs / reduced.macs:.2f}× fewer.</li>
</ul>
<table><thead><tr><th>term (bottleneck module)</th><th class="num">MACs</th></tr></thead><tbody>{terms}
<tr><th>total</th><th class="num">{reduced.macs:,}</th></tr></tbody></table>
<h2>The notes' arithmetic slips</h2>
<ul>
<li>The slides print "Total: 358M ops" for the bottleneck module; their own six terms add up to
{reduced.macs / 1e6:.0f} M (above).</li>
<li>AlexNet's "224×224" input: (224 − 11)/4 + 1 = {escape(alex_224)}, not an integer; 227 gives
{f.conv_output_size(227, 11, 4)}×{f.conv_output_size(227, 11, 4)} (docs/analysis.md).</li>
<li>VGG16's "TOTAL memory: 24M × 4 bytes ≈ 93MB / image": the table's own rows add up to about 15.2 M activations,
≈ 61 MB in float32 (docs/analysis.md reproduces the table from <code>cnnatlas summary vgg16</code>).</li>
<li>MobileNets Table 2 prints 1.19% of mult-adds for the first convolution; 112·112·27·32 =
{112 * 112 * 27 * 32:,} is 1.91% of the network's 568.7 M (a digit swap; docs/analysis.md).</li>
</ul>"""
    return page("Formulas", body, "", has_q)


def questions_page(markdown: str, has_q: bool) -> str:
    body = f"""<h1>The reader's questions</h1>
<p class="lead">docs/questions.md, as shipped with this copy of cnnatlas.</p>
<pre style="white-space: pre-wrap">{escape(markdown)}</pre>"""
    return page("Questions", body, "", has_q)


__all__ = ["formulas_page", "index_page", "model_page", "page", "questions_page"]
