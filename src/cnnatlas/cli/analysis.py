"""`cnnatlas summary` (one network, layer by layer) and `cnnatlas compare` (several, side by side)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnatlas.limits import MAX_BATCH_SIZE, MAX_IMAGE_SIDE, MAX_IN_CHANS

FORMATS = ("table", "markdown", "csv", "json")
# The test protocols a paper reports (cnnatlas.published.PROTOCOLS), less the two that only
# describe other data ("full image") or missing information ("not stated").
PROTOCOL_CHOICES = ("1 crop", "10 crops", "144 crops", "dense, 1 scale", "dense, 3 scales", "dense, multi-scale")


SOURCE_HELP = (
    "a model source: a registered name (see `cnnatlas models`), torchvision:NAME (built without weights), "
    "path/to/file.py:NAME or package.module:NAME (an nn.Module class or a function returning one). "
    "Loading a file or a module RUNS ITS CODE, as `python file.py` would: only name files you trust"
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="per-layer shapes, params, MACs, memory and receptive field of a model",
        description="Per-layer shapes, parameters, MACs/FLOPs, activation memory and receptive fields of a "
        "model, traced on the meta device. " + SOURCE_HELP + ".",
    )
    p.add_argument("model", metavar="SOURCE", help=SOURCE_HELP)
    _add_model_options(p)
    _add_input_options(p)
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument(
        "--depth",
        type=_positive_int,
        default=None,
        metavar="N",
        help="merge layers deeper than N into their parent module (with --by module: list modules down to depth N)",
    )
    p.add_argument(
        "--by",
        choices=("layer", "module", "operator", "type"),
        default="layer",
        help="rows per layer (default), per module path (totals of each module at every depth), per ATen "
        "operator, or per layer type; each with its share of the total",
    )
    p.add_argument(
        "--columns",
        default=None,
        metavar="A,B,…",
        help="columns of the table, in order, e.g. layer,module,output,params,macs (an unknown name prints "
        "the list of columns)",
    )
    p.add_argument(
        "--optimizer", choices=("sgd", "momentum", "adam"), default="momentum", help="for the training-memory estimate"
    )
    p.add_argument("--measure", action="store_true", help="also run one real training step and print its peak memory")
    p.set_defaults(handler=_cmd_summary)

    c = sub.add_parser(
        "compare",
        help="several models side by side: params, MACs, memory, depth, published accuracy",
        description="Several models side by side. " + SOURCE_HELP + ".",
    )
    c.add_argument("models", nargs="+", metavar="SOURCE", help=SOURCE_HELP)
    _add_model_options(c)
    _add_input_options(c, what="one input for all (default: each model's own)")
    c.add_argument("--format", choices=FORMATS, default="table")
    c.add_argument(
        "--columns",
        default=None,
        metavar="A,B,…",
        help="columns of the table by header, in order (e.g. model,params,MACs)",
    )
    c.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default="1 crop",
        help="test protocol of the published columns (default: a single crop); cells measured "
        "another way are marked and footnoted",
    )
    c.set_defaults(handler=_cmd_compare)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="K=V",
        help="keyword argument for the model's builder (repeatable), e.g. --model-option num_classes=10; "
        "V is read as a Python literal (10, 0.5, 'text', (16, 32) or just 16,32, True), a JSON true/null, "
        "or else as text",
    )
    p.add_argument("--num-classes", type=int, default=None, metavar="N", help="same as num_classes=N (at most 100,000)")


def _add_input_options(p: argparse.ArgumentParser, what: str = "default: the model's own") -> None:
    p.add_argument(
        "--input",
        action="append",
        type=parse_shape,
        default=None,
        metavar="SHAPE",
        help=f"input shape without the batch dimension, e.g. 3x224x224, 1x16000 or 10; repeat it for a model "
        f"with several inputs ({what})",
    )
    p.add_argument(
        "--input-dtype",
        action="append",
        default=None,
        metavar="DTYPE",
        help="dtype of the inputs (one for all, or one per --input): float32 (default), float16, bfloat16, "
        "long (token ids), int32, bool",
    )


def parse_shape(text: str) -> tuple[int, ...]:
    """ "3x224x224" (or "3×224×224", "3,224,224", "10") → (3, 224, 224)."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an input shape looks like 3x224x224 or 10, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"an input shape is positive integers, got {text!r}")
    if max(values) > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"input shape {text!r} exceeds {MAX_BATCH_SIZE:,} along one dimension")
    return values


def parse_input_size(text: str) -> tuple[int, int, int]:
    """ "3x224x224" → (3, 224, 224): an image shape C×H×W (three integers)."""
    values = parse_shape(text)
    if len(values) != 3:
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


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """--model-option K=V … and --num-classes as builder keyword arguments."""
    from cnnatlas.sources import parse_model_options

    options = parse_model_options(args.model_option)
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    return options


def input_request(args: argparse.Namespace) -> dict[str, Any]:
    """analyze() keywords for --input … and --input-dtype …"""
    shapes = args.input
    return {
        "input_size": None if shapes is None else (shapes[0] if len(shapes) == 1 else shapes),
        "input_dtypes": args.input_dtype,
    }


def _cmd_summary(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cnnatlas.analysis import analyze, measure_training_step

    options = model_options(args)
    result = analyze(args.model, batch=args.batch, optimizer=args.optimizer, **input_request(args), **options)
    if args.by != "layer":
        from cnnatlas.analysis.breakdown import breakdown

        _emit_breakdown(breakdown(result, args.by, max_depth=args.depth), args)
        return 0
    if args.depth is not None:
        result = result.collapse(args.depth)
    if args.measure:
        import torch

        from cnnatlas.errors import InputError
        from cnnatlas.limits import available_memory_bytes
        from cnnatlas.safeio import human_bytes
        from cnnatlas.sources import resolve_model

        if len(result.inputs) != 1:
            raise InputError("--measure runs one training step on a single input; this model takes several")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        estimate = int(result.totals["training_memory_bytes"])
        available = available_memory_bytes(device)
        if available is not None and estimate > available:
            raise InputError(
                f"--measure: the estimated training-step memory {human_bytes(estimate)} exceeds the "
                f"{human_bytes(available)} available on {device}; use a smaller --batch, --input or --num-classes"
            )
        measured = measure_training_step(
            resolve_model(args.model, **options), result.input_shape, args.optimizer, device
        )
        measured["estimate_bytes"] = result.totals["training_memory_bytes"]
        measured["device"] = device
        result = replace(result, measured=measured)
    _emit(result, args.format, args.columns)
    return 0


def _emit(result: Any, fmt: str, columns: str | None = None) -> None:
    from cnnatlas.analysis.render import DEFAULT_COLUMNS

    chosen = columns.split(",") if columns else DEFAULT_COLUMNS
    if fmt == "json":
        print(result.to_json())
    elif fmt == "markdown":
        print(result.to_markdown(chosen), end="")
    elif fmt == "csv":
        print(result.to_csv(chosen if columns else None), end="")
    else:
        headers, _, _ = result.cells(chosen)
        print_table(result.to_text(chosen), lambda: result.to_rich(chosen), len(headers))


def _emit_breakdown(table: Any, args: argparse.Namespace) -> None:
    columns = args.columns.split(",") if args.columns else None
    if args.format == "json":
        print(json.dumps(table.to_dict(), indent=1))
    elif args.format == "markdown":
        print(table.to_markdown(columns), end="")
    elif args.format == "csv":
        print(table.to_csv(), end="")
    else:
        print_table(table.to_text(columns), None, 0)


def print_table(plain: str, rich_table: Any, n_columns: int) -> None:
    """Print a table whole. A terminal wide enough for every cell gets the ``rich`` rendering;
    anything else (a pipe, a file, a narrow terminal) gets the plain fixed-width text, which
    never truncates a cell."""
    import sys

    if rich_table is not None and sys.stdout.isatty():
        from rich.console import Console

        console = Console()
        widest = max(len(line) for line in plain.splitlines())
        if widest + 3 * n_columns + 1 <= console.width:  # rich adds a border and padding per column
            console.print(rich_table())
            return
    sys.stdout.write(plain)


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
    names: list[str],
    input_size: Any = None,
    protocol: str = "1 crop",
    *,
    input_dtypes: Any = None,
    model_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One dict per model: the figures `cnnatlas compare` shows (plain numbers).

    ``top1``/``top5`` are the single-model published errors under ``protocol`` (the single
    crop by default; CIFAR's and MNIST's whole image counts as one) on the model's own data
    set, or the closest other protocol with ``other_protocol`` set (cnnatlas.published.select).
    """
    from cnnatlas.analysis import analyze
    from cnnatlas.published import matches_protocol, select
    from cnnatlas.registry import model_info
    from cnnatlas.sources import source_kind

    rows = []
    for name in names:
        # Unknown names raise InputError with suggestions; other sources have no published results.
        info = model_info(name) if source_kind(name) == "registered" else None
        result = analyze(name, input_size=input_size, input_dtypes=input_dtypes, **(model_options or {}))
        cells: dict[str, Any] = {"top1": None, "top5": None}
        for key, metric in (("top1", "top-1"), ("top5", "top-5")) if info is not None else ():
            chosen = select(info.results, metric, info.dataset, protocol)
            cells[key] = None if chosen is None else _result_cell(chosen, info, not matches_protocol(chosen, protocol))
        rows.append(
            {
                "model": name,
                "input_shape": result.input_shape[1:],
                "params": result.totals["params"],
                "macs": result.totals["macs"],
                "activation_bytes": result.totals["activation_bytes"],
                "min_input_size": info.min_input_size if info is not None else result.min_input_size,
                "depth": result.totals["network_depth"],
                "dataset": info.dataset if info is not None else "",
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
    from cnnatlas.analysis.render import human, human_bytes, markdown_table, plain_table

    request = input_request(args)
    rows = compare_rows(
        args.models,
        request["input_size"],
        args.protocol,
        input_dtypes=request["input_dtypes"],
        model_options=model_options(args),
    )
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
                human(r["params"]),
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
        print(markdown_table(*select_columns(COMPARE_HEADERS, cells, args.columns)))
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
        headers, cells = select_columns(COMPARE_HEADERS, cells, args.columns)
        right = [h in COMPARE_NUMBER_HEADERS for h in headers]
        title = "comparison (forward activations: batch 1, float32)"
        plain = f"{title}\n\n{plain_table(headers, cells, right)}\n" + "\n".join(notes) + "\n"
        print_table(plain, lambda: _rich_compare(headers, cells, right, title, notes), len(headers))
    return 0


COMPARE_NUMBER_HEADERS = {"params", "MACs", "forward activations", "min input", "depth"}


def select_columns(headers: Any, cells: list[list[str]], columns: str | None) -> tuple[list[str], list[list[str]]]:
    """The ``--columns`` subset (header names, any case, in the order given) of a table."""
    from cnnatlas.analysis.render import check_columns

    headers = list(headers)
    if not columns:
        return headers, cells
    by_lower = {h.lower(): i for i, h in enumerate(headers)}
    keys = check_columns([c.lower() for c in columns.split(",")], by_lower)
    picked = [by_lower[k] for k in keys]
    return [headers[i] for i in picked], [[row[i] for i in picked] for row in cells]


def _rich_compare(headers: list[str], cells: list[list[str]], right: list[bool], title: str, notes: list[str]) -> Any:
    from rich.table import Table

    table = Table(title=title, caption="\n".join(notes), caption_justify="left")
    for header, is_number in zip(headers, right):
        table.add_column(header, justify="right" if is_number else "left", no_wrap=is_number, overflow="fold")
    for c in cells:
        table.add_row(*c)
    return table


__all__ = [
    "add_commands",
    "compare_footnotes",
    "compare_rows",
    "input_request",
    "model_options",
    "parse_input_size",
    "parse_shape",
    "print_table",
]
