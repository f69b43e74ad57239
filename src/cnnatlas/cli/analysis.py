"""`cnnatlas summary` (one network, layer by layer) and `cnnatlas compare` (several, side by side)."""

from __future__ import annotations

import argparse
import json
from typing import Any

FORMATS = ("table", "markdown", "csv", "json")
# The test protocols a paper reports (cnnatlas.published.PROTOCOLS), less the two that only
# describe other data ("full image") or missing information ("not stated").
PROTOCOL_CHOICES = ("1 crop", "10 crops", "144 crops", "dense, 1 scale", "dense, 3 scales", "dense, multi-scale")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="per-layer shapes, params, MACs, memory and receptive field of a model")
    p.add_argument("model", help="registered model name (see `cnnatlas models`)")
    p.add_argument(
        "--input", type=parse_input_size, default=None, metavar="CxHxW", help="input size (default: the model's own)"
    )
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument(
        "--depth",
        type=_positive_int,
        default=None,
        metavar="N",
        help="merge layers deeper than N into their parent module",
    )
    p.add_argument(
        "--optimizer", choices=("sgd", "momentum", "adam"), default="momentum", help="for the training-memory estimate"
    )
    p.add_argument("--measure", action="store_true", help="also run one real training step and print its peak memory")
    p.add_argument("--num-classes", type=_positive_int, default=None, metavar="N")
    p.set_defaults(handler=_cmd_summary)

    c = sub.add_parser("compare", help="several models side by side: params, MACs, memory, depth, published accuracy")
    c.add_argument("models", nargs="+", metavar="MODEL")
    c.add_argument(
        "--input",
        type=parse_input_size,
        default=None,
        metavar="CxHxW",
        help="one input size for all (default: each model's own)",
    )
    c.add_argument("--format", choices=FORMATS, default="table")
    c.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default="1 crop",
        help="test protocol of the published columns (default: a single crop); cells measured "
        "another way are marked and footnoted",
    )
    c.set_defaults(handler=_cmd_compare)


def parse_input_size(text: str) -> tuple[int, int, int]:
    """ "3x224x224" (or "3×224×224", "3,224,224") → (3, 224, 224)."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size must look like 3x224x224, got {text!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"input size must be three positive integers C×H×W, got {text!r}")
    return values  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_summary(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cnnatlas.analysis import analyze, measure_training_step

    kwargs: dict[str, Any] = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    result = analyze(args.model, input_size=args.input, batch=args.batch, optimizer=args.optimizer, **kwargs)
    if args.depth is not None:
        result = result.collapse(args.depth)
    if args.measure:
        import torch

        from cnnatlas.registry import create_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        measured = measure_training_step(create_model(args.model, **kwargs), result.input_shape, args.optimizer, device)
        measured["estimate_bytes"] = result.totals["training_memory_bytes"]
        measured["device"] = device
        result = replace(result, measured=measured)
    _emit(result, args.format)
    return 0


def _emit(result: Any, fmt: str) -> None:
    if fmt == "json":
        print(result.to_json())
    elif fmt == "markdown":
        print(result.to_markdown(), end="")
    elif fmt == "csv":
        print(result.to_csv(), end="")
    else:
        from rich.console import Console

        Console().print(result.to_rich())


COMPARE_HEADERS = (
    "model",
    "input",
    "params",
    "MACs",
    "forward activations",
    "min input",
    "depth",
    "data set",
    "top-1 error %",
    "top-5 error %",
    "source",
)
OTHER_PROTOCOL_MARK = "*"


def compare_rows(
    names: list[str], input_size: tuple[int, int, int] | None = None, protocol: str = "1 crop"
) -> list[dict[str, Any]]:
    """One dict per model: the figures `cnnatlas compare` shows (plain numbers).

    ``top1``/``top5`` are the single-model published errors under ``protocol`` (the single
    crop by default; CIFAR's and MNIST's whole image counts as one) on the model's own data
    set, or the closest other protocol with ``other_protocol`` set (cnnatlas.published.select).
    """
    from cnnatlas.analysis import analyze
    from cnnatlas.published import matches_protocol, select
    from cnnatlas.registry import model_info

    rows = []
    for name in names:
        info = model_info(name)  # unknown names raise InputError with suggestions
        result = analyze(name, input_size=input_size)
        cells = {}
        for key, metric in (("top1", "top-1"), ("top5", "top-5")):
            chosen = select(info.results, metric, info.dataset, protocol)
            cells[key] = None if chosen is None else _result_cell(chosen, info, not matches_protocol(chosen, protocol))
        rows.append(
            {
                "model": name,
                "input_shape": result.input_shape[1:],
                "params": result.totals["params"],
                "macs": result.totals["macs"],
                "activation_bytes": result.totals["activation_bytes"],
                "min_input_size": info.min_input_size,
                "depth": result.totals["network_depth"],
                "dataset": info.dataset,
                **cells,
            }
        )
    return rows


def _result_cell(r: Any, info: Any, other_protocol: bool) -> dict[str, Any]:
    publisher = r.reference or f"{info.paper.short()} {info.paper.year}"
    return {
        "error": r.error,
        "dataset": r.dataset,
        "split": r.split,
        "protocol": r.protocol,
        "models": r.models,
        "setting": r.setting,
        "source": f"{publisher}, {r.source}",
        "other_protocol": other_protocol,
    }


def compare_footnotes(rows: list[dict[str, Any]], protocol: str) -> list[str]:
    """The lines under the table: what the columns hold and which cells are another protocol."""
    lines = [
        f"Published error, single model, {protocol} (CIFAR/MNIST: the whole test image); "
        f"ImageNet-1k figures are on the validation set."
    ]
    for row in rows:
        for key, metric in (("top1", "top-1"), ("top5", "top-5")):
            cell = row[key]
            if cell is not None and cell["other_protocol"]:
                lines.append(
                    f"{OTHER_PROTOCOL_MARK} {row['model']} {metric}: {cell['protocol']}"
                    + (f" ({cell['setting']})" if cell["setting"] else "")
                    + f", {cell['source']}"
                )
    return lines


def _cmd_compare(args: argparse.Namespace) -> int:
    from cnnatlas.analysis.render import human, human_bytes, markdown_table

    rows = compare_rows(args.models, args.input, args.protocol)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0

    def result_text(cell: dict[str, Any] | None) -> str:
        if cell is None:
            return ""
        return f"{cell['error']:g}" + (OTHER_PROTOCOL_MARK if cell["other_protocol"] else "")

    cells = []
    for r in rows:
        sources = "; ".join(dict.fromkeys(p["source"] for p in (r["top1"], r["top5"]) if p is not None))
        cells.append(
            [
                r["model"],
                "×".join(map(str, r["input_shape"])),
                f"{r['params'] / 1e6:.2f}M",
                human(r["macs"]),
                human_bytes(r["activation_bytes"]),
                str(r["min_input_size"]),
                str(r["depth"]),
                r["dataset"],
                result_text(r["top1"]),
                result_text(r["top5"]),
                sources,
            ]
        )
    notes = compare_footnotes(rows, args.protocol)
    if args.format == "markdown":
        print(markdown_table(COMPARE_HEADERS, cells))
        print()
        print("\n\n".join(notes))
    elif args.format == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(
            [
                "model",
                "input",
                "params",
                "macs",
                "activation_bytes",
                "min_input_size",
                "depth",
                "dataset",
                "top1_error",
                "top1_protocol",
                "top5_error",
                "top5_protocol",
                "source",
            ]
        )
        for r, c in zip(rows, cells):
            top1, top5 = r["top1"] or {}, r["top5"] or {}
            writer.writerow(
                [
                    r["model"],
                    c[1],
                    r["params"],
                    r["macs"],
                    r["activation_bytes"],
                    r["min_input_size"],
                    r["depth"],
                    r["dataset"],
                    top1.get("error", ""),
                    top1.get("protocol", ""),
                    top5.get("error", ""),
                    top5.get("protocol", ""),
                    c[10],
                ]
            )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            *COMPARE_HEADERS,
            title="comparison (forward activations: batch 1, float32)",
            caption="\n".join(notes),
            caption_justify="left",
        )
        for c in cells:
            table.add_row(*c)
        Console().print(table)
    return 0


__all__ = ["add_commands", "compare_footnotes", "compare_rows", "parse_input_size"]
