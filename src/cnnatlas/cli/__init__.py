"""The ``cnnatlas`` command. The only place that turns errors into exit codes.

Exit codes: 0 success; 2 a user error (``CnnAtlasError``, bad argument), reported as one line
on stderr starting with ``cnnatlas: error:`` (a traceback only with ``--debug``); anything
else is a bug and keeps its traceback.

Each sub-command lives in a module of this package (listed in ``COMMAND_MODULES``) that exposes
``add_commands(subparsers)`` and sets ``handler=function(args) -> int`` on its parsers. Library
packages never print; only these modules talk to the terminal.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn, Sequence

from cnnatlas.errors import CnnAtlasError

COMMAND_MODULES = (
    "cnnatlas.cli.models",  # models
    "cnnatlas.cli.analysis",  # summary, compare
    "cnnatlas.cli.train",  # train, recipes
    "cnnatlas.cli.evaluate",  # evaluate, predict
    "cnnatlas.cli.experiment",  # experiment list/run/report, features
    "cnnatlas.cli.plot",  # plot bubble|winners|layers|rf|curves
    "cnnatlas.cli.diagram",  # diagram
    "cnnatlas.cli.atlas",  # atlas
    "cnnatlas.cli.bench",  # bench
    "cnnatlas.cli.export",  # export
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as our one-line error (exit 2), without usage spam."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(_report(f"{message} (see `{self.prog} --help`)"))


def _report(message: str) -> int:
    # Under torchrun every rank validates the same input and fails the same way: rank 0 speaks.
    if os.environ.get("RANK", "0") in ("0", ""):
        print(f"cnnatlas: error: {message}", file=sys.stderr)
    return 2


def warn(message: str) -> None:
    """One ``cnnatlas: warning:`` line on stderr (something was skipped or adjusted; work goes on)."""
    print(f"cnnatlas: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnatlas", description="Classic CNNs as published: build, measure, train, compare.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except CnnAtlasError as exc:
        if debug:
            raise
        return _report(str(exc))
    except KeyboardInterrupt:
        return _report("interrupted")
    except BrokenPipeError:  # `cnnatlas models | head`
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
