"""`cnnatlas diagram MODEL`: the architecture drawn from the analyser's trace (Graphviz)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.cli.analysis import SOURCE_HELP, _add_model_options, _positive_int, parse_input_size
    from cnnatlas.plot.diagram import DIAGRAM_FORMATS

    d = sub.add_parser(
        "diagram",
        help="architecture diagram from the analyser's trace (SVG/PNG/PDF via Graphviz, or DOT)",
        description="The architecture drawn from the analyser's trace. " + SOURCE_HELP + ".",
    )
    d.add_argument("model", metavar="SOURCE", help=SOURCE_HELP)
    _add_model_options(d)
    d.add_argument("--depth", type=_positive_int, default=None, metavar="N", help="one node per module at depth N")
    d.add_argument("--format", choices=DIAGRAM_FORMATS, default=None, help="default: from --out's extension, else svg")
    d.add_argument("--out", default=None, metavar="FILE", help="output file (default MODEL.FORMAT)")
    d.add_argument("--input", type=parse_input_size, default=None, metavar="CxHxW", help="input size")
    d.set_defaults(handler=_cmd_diagram)


def _cmd_diagram(args: argparse.Namespace) -> int:
    from cnnatlas.cli.analysis import model_options
    from cnnatlas.errors import CnnAtlasError
    from cnnatlas.plot.diagram import INSTALL_HINT, diagram, diagram_format, graphviz_available, save_diagram
    from cnnatlas.plot.output import check_output_path

    fmt = diagram_format(args.out, args.format)
    # A source such as file.py:Net or torchvision:resnet18 is not a file name.
    out = args.out or f"{args.model.replace(':', '_').replace('/', '_')}.{fmt}"
    check_output_path(out, directory=True)
    if fmt != "dot" and not graphviz_available():
        raise CnnAtlasError(INSTALL_HINT)  # before the trace, so the hint comes at once
    graph = diagram(args.model, depth=args.depth, input_size=args.input, **model_options(args))
    print(f"wrote {save_diagram(graph, out, fmt)} ({len(graph.layer_nodes)} nodes)")
    return 0


__all__ = ["add_commands"]
