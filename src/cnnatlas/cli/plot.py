"""`cnnatlas plot bubble|winners|layers|rf|curves|bench`: the notes' charts as PNG, SVG or PDF."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.cli.analysis import PROTOCOL_CHOICES, SOURCE_HELP

    plot = sub.add_parser("plot", help="charts: bubble, winners, layers, rf, curves, bench (PNG/SVG/PDF by extension)")
    charts = plot.add_subparsers(dest="chart", metavar="CHART", parser_class=type(plot))
    charts.required = True

    def chart(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = charts.add_parser(name, help=help_text)
        parser.add_argument(
            "--out", default=f"{name}.png", metavar="FILE", help=f"output file, .png/.svg/.pdf (default {name}.png)"
        )
        parser.set_defaults(handler=_cmd_plot)
        return parser

    b = chart("bubble", "top-1 accuracy vs G-MACs, bubble area ∝ parameters (Canziani et al. 2016, Fig. 2)")
    b.add_argument("models", nargs="*", metavar="MODEL", help="names or patterns (default: every ImageNet model)")
    b.add_argument("--linear", action="store_true", help="linear operations axis (default: logarithmic)")
    b.add_argument("--protocol", choices=PROTOCOL_CHOICES, default="1 crop", help="drawn filled (default 1 crop)")
    chart("winners", "ILSVRC winners by year: top-5 error with depth")
    lay = chart("layers", "per-layer activations, parameters and MACs with the three conclusions")
    lay.add_argument("models", nargs="+", metavar="SOURCE", help="one model, or two side by side: " + SOURCE_HELP)
    lay.add_argument("--metric", choices=("activations", "params", "macs", "all"), default="all")
    r = chart("rf", "receptive field and jump by layer")
    r.add_argument("model", metavar="SOURCE", help=SOURCE_HELP)
    c = chart("curves", "training curves of runs overlaid (thin: train, dashed: validation, bold: test)")
    c.add_argument("runs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--metric", choices=("error", "train_error", "val_error", "test_error", "loss"), default="error")
    c.add_argument("--x", choices=("epoch", "step"), default="epoch")
    be = chart("bench", "time and memory vs batch size, operations vs time (Canziani et al. 2016, Figs. 3–4)")
    be.add_argument("result", metavar="RESULT.json", help="written by `cnnatlas bench --format json --out`")
    be.add_argument("--batch", type=int, default=None, help="batch size of the operations-vs-time panel")


def _cmd_plot(args: argparse.Namespace) -> int:
    from cnnatlas.errors import InputError
    from cnnatlas.plot import charts
    from cnnatlas.plot.curves import curves
    from cnnatlas.plot.output import check_output_path, save_figure

    check_output_path(args.out)  # a bad extension or directory fails before any work
    figure: Any
    if args.chart == "bubble":
        figure = charts.bubble(args.models or None, log_x=not args.linear, protocol=args.protocol)
    elif args.chart == "winners":
        figure = charts.winners()
    elif args.chart == "layers":
        if len(args.models) > 2:
            raise InputError(f"plot layers takes one or two models, got {len(args.models)}")
        figure = charts.layers(args.models, metric=args.metric)
    elif args.chart == "rf":
        figure = charts.rf(args.model)
    elif args.chart == "bench":
        from cnnatlas.plot.bench import bench, load_bench_result

        figure = bench(load_bench_result(args.result), batch=args.batch)
    else:
        figure = curves(args.runs, metric=args.metric, x=args.x)
    print(f"wrote {save_figure(figure, args.out)}")
    return 0


__all__ = ["add_commands"]
