"""`cnnatlas models`: what is registered, with paper and size."""

from __future__ import annotations

import argparse
import json
from typing import NoReturn, Sequence


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
                r["name"],
                r["family"],
                r["paper"],
                f"{r['params']:,}",
                "×".join(map(str, r["input_size"])),
                r["dataset"],
            )
        Console().print(table)
    return 0


def raise_input(message: str) -> NoReturn:
    from cnnatlas.errors import InputError

    raise InputError(message)
