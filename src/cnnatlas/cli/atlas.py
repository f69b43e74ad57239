"""`cnnatlas atlas --out DIR`: the offline HTML atlas of every model."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.cli.analysis import SOURCE_HELP, _positive_int, parse_input_size

    a = sub.add_parser("atlas", help="build the offline HTML atlas (index, one page per model, formulas)")
    a.add_argument("--out", required=True, metavar="DIR", help="directory to write (new, empty, or an earlier atlas)")
    a.add_argument(
        "--models",
        nargs="+",
        metavar="SOURCE",
        help="registered names or patterns (default: every registered model), and any other model source: "
        + SOURCE_HELP,
    )
    a.add_argument(
        "--input",
        type=parse_input_size,
        metavar="CxHxW",
        help="input of the sources that declare none (default 3x224x224); registered models use their paper's",
    )
    a.add_argument("--jobs", type=_positive_int, default=None, metavar="N", help="worker processes (default: CPUs)")
    a.set_defaults(handler=_cmd_atlas)


def _cmd_atlas(args: argparse.Namespace) -> int:
    from cnnatlas.atlas import build_atlas
    from cnnatlas.plot.diagram import INSTALL_HINT, graphviz_available

    if not graphviz_available():
        print(f"cnnatlas: note: {INSTALL_HINT}; pages show the DOT source instead of pictures", file=sys.stderr)

    def progress(name: str, done: int, total: int) -> None:
        print(f"\r[{done}/{total}] {name:<32}", end="", file=sys.stderr, flush=True)

    built = build_atlas(
        args.out,
        args.models,
        jobs=args.jobs,
        progress=progress if sys.stderr.isatty() else None,
        input_size=args.input,
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"wrote {built.pages} pages for {len(built.models)} models to {built.out_dir} in {built.seconds:.1f} s")
    print(f"open {built.out_dir / 'index.html'}")
    return 0


__all__ = ["add_commands"]
