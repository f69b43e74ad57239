"""`cnnatlas summary` (one network, layer by layer) and `cnnatlas compare` (several, side by side)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnatlas.limits import MAX_BATCH_SIZE, MAX_IMAGE_SIDE, MAX_IN_CHANS

FORMATS = ("table", "markdown", "csv", "json")


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
    p.add_argument("--num-classes", type=int, default=None, metavar="N", help="classifier outputs (at most 100,000)")
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
    if values[0] > MAX_IN_CHANS or max(values[1:]) > MAX_IMAGE_SIDE:
        raise argparse.ArgumentTypeError(
            f"input size {text!r} exceeds the limits ({MAX_IN_CHANS} channels, {MAX_IMAGE_SIDE} pixels a side)"
        )
    return values  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"expected a positive integer of at most {MAX_BATCH_SIZE}, got {text!r}")
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

        from cnnatlas.errors import InputError
        from cnnatlas.limits import available_memory_bytes
        from cnnatlas.registry import create_model
        from cnnatlas.safeio import human_bytes

        device = "cuda" if torch.cuda.is_available() else "cpu"
        estimate = int(result.totals["training_memory_bytes"])
        available = available_memory_bytes(device)
        if available is not None and estimate > available:
            raise InputError(
                f"--measure: the estimated training-step memory {human_bytes(estimate)} exceeds the "
                f"{human_bytes(available)} available on {device}; use a smaller --batch, --input or --num-classes"
            )
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
    "top-1",
    "top-5",
    "source",
)


def compare_rows(names: list[str], input_size: tuple[int, int, int] | None = None) -> list[dict[str, Any]]:
    """One dict per model: the figures `cnnatlas compare` shows (plain numbers)."""
    from cnnatlas.analysis import analyze
    from cnnatlas.registry import model_info

    rows = []
    for name in names:
        info = model_info(name)  # unknown names raise InputError with suggestions
        result = analyze(name, input_size=input_size)
        top1, top5 = _published(info.results)
        rows.append(
            {
                "model": name,
                "input_shape": result.input_shape[1:],
                "params": result.totals["params"],
                "macs": result.totals["macs"],
                "activation_bytes": result.totals["activation_bytes"],
                "min_input_size": info.min_input_size,
                "depth": result.totals["network_depth"],
                "top1": top1,
                "top5": top5,
            }
        )
    return rows


def _published(results: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first published top-1 and top-5 figure, with metric, data set and source."""
    found: dict[str, dict[str, Any]] = {}
    for r in results:
        metric = r.metric.lower()
        key = (
            "top1" if "top-1" in metric or metric in ("error", "accuracy") else ("top5" if "top-5" in metric else None)
        )
        if key and key not in found:
            found[key] = {"metric": r.metric, "value": r.value, "dataset": r.dataset, "source": r.source}
    return found.get("top1"), found.get("top5")


def _cmd_compare(args: argparse.Namespace) -> int:
    from cnnatlas.analysis.render import human, human_bytes, markdown_table

    rows = compare_rows(args.models, args.input)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0

    def result_text(r: dict[str, Any] | None) -> str:
        return "" if r is None else f"{r['value']:g}% {r['metric'].replace('top-1 ', '').replace('top-5 ', '')}"

    cells = []
    for r in rows:
        sources = "; ".join(
            dict.fromkeys(f"{p['dataset']}, {p['source']}" for p in (r["top1"], r["top5"]) if p is not None)
        )
        cells.append(
            [
                r["model"],
                "×".join(map(str, r["input_shape"])),
                f"{r['params'] / 1e6:.2f}M",
                human(r["macs"]),
                human_bytes(r["activation_bytes"]),
                str(r["min_input_size"]),
                str(r["depth"]),
                result_text(r["top1"]),
                result_text(r["top5"]),
                sources,
            ]
        )
    if args.format == "markdown":
        print(markdown_table(COMPARE_HEADERS, cells))
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
                "top1",
                "top5",
                "source",
            ]
        )
        for r, c in zip(rows, cells):
            writer.writerow(
                [
                    r["model"],
                    c[1],
                    r["params"],
                    r["macs"],
                    r["activation_bytes"],
                    r["min_input_size"],
                    r["depth"],
                    c[7],
                    c[8],
                    c[9],
                ]
            )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*COMPARE_HEADERS, title="comparison (forward activations: batch 1, float32)")
        for c in cells:
            table.add_row(*c)
        Console().print(table)
    return 0


__all__ = ["add_commands", "compare_rows", "parse_input_size"]
