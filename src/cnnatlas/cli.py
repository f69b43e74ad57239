"""The ``cnnatlas`` command. The only place that turns errors into exit codes.

Exit codes: 0 success; 2 a user error (``CnnAtlasError``, bad argument), reported as one line
on stderr starting with ``cnnatlas: error:`` (a traceback only with ``--debug``); anything
else is a bug and keeps its traceback.

Sub-commands live beside the code they drive: each module in ``COMMAND_MODULES`` exposes
``add_commands(subparsers)`` and sets ``handler=function(args) -> int`` on its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import NoReturn, Sequence

from cnnatlas.errors import CnnAtlasError

COMMAND_MODULES = (
    "cnnatlas.cli",  # models
    "cnnatlas.analysis.commands",  # summary, compare
    "cnnatlas.train.commands",  # train, recipes
    "cnnatlas.train.eval_commands",  # evaluate, predict
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as our one-line error (exit 2), without usage spam."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(_report(f"{message} (see `{self.prog} --help`)"))


def _report(message: str) -> int:
    print(f"cnnatlas: error: {message}", file=sys.stderr)
    return 2


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


# -- `cnnatlas models` -------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    p.set_defaults(handler=_cmd_models)


def model_rows(names: Sequence[str]) -> list[dict]:
    """One JSON-ready row per model: registry metadata plus figures read off a meta build."""
    from cnnatlas.registry import model_info

    rows = []
    for name in names:
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "paper": f"{info.paper.short()} {info.paper.year}",
                "title": info.paper.title,
                "url": info.paper.url,
                "year": info.paper.year,
                "params": info.params,
                "trainable_params": info.trainable_params,
                "input_size": list(info.input_size),
                "min_input_size": info.min_input_size,
                "dataset": info.dataset,
                "num_classes": info.num_classes,
                "torchvision": info.torchvision_name,
                "default_recipe": info.default_recipe,
            }
        )
    return rows


def models_markdown(rows: Sequence[dict]) -> str:
    """The README's model table."""
    lines = [
        "| model | paper | year | params | default input | data set | torchvision weights |",
        "|---|---|---|---:|---|---|---|",
    ]
    for r in rows:
        paper = f"[{r['paper'].rsplit(' ', 1)[0]}]({r['url']})" if r["url"] else r["paper"]
        lines.append(
            f"| `{r['name']}` | {paper} | {r['year']} | {r['params']:,} | {'×'.join(map(str, r['input_size']))} "
            f"| {r['dataset']} | {r['torchvision'] or '—'} |"
        )
    return "\n".join(lines)


def _cmd_models(args: argparse.Namespace) -> int:
    from cnnatlas.registry import list_models

    names = list_models(args.pattern)
    if not names:
        raise_input(f"no model matches {args.pattern!r}; run `cnnatlas models` for the list")
    rows = model_rows(names)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    elif args.format == "markdown":
        print(models_markdown(rows))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("name", "family", "paper", "params", "input", "data set", title=f"{len(rows)} models")
        for r in rows:
            table.add_row(
                r["name"], r["family"], r["paper"], f"{r['params']:,}", "×".join(map(str, r["input_size"])), r["dataset"]
            )
        Console().print(table)
    return 0


def raise_input(message: str) -> NoReturn:
    from cnnatlas.errors import InputError

    raise InputError(message)
