"""`cnnatlas bench SOURCE …`: measured time, throughput, memory and achieved GFLOP/s against batch size.

``cnnatlas bench resnet50 mobilenet_v1_100 --batch 1,8,32 --backend fast --format json --out r.json``
prints (or writes) ``{"environment": {…}, "peak": {…}, "results": [{model, backend, dtype, mode,
batch, ms_per_batch, iqr_ms, ms_per_image, images_per_s, peak_memory_bytes, gflops,
peak_fraction, …}]}``; ``cnnatlas plot bench r.json`` draws it (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from cnnatlas.cli.analysis import parse_input_size
from cnnatlas.errors import InputError

FORMATS = ("table", "markdown", "csv", "json")
COLUMNS = (
    ("model", lambda r: r["model"]),
    ("backend", lambda r: r["backend"]),
    ("dtype", lambda r: r["dtype"]),
    ("mode", lambda r: r["mode"]),
    ("batch", lambda r: str(r["batch"])),
    ("ms/batch", lambda r: f"{r['ms_per_batch']:.2f}"),
    ("IQR ms", lambda r: f"{r['iqr_ms']:.2f}"),
    ("ms/image", lambda r: f"{r['ms_per_image']:.3f}"),
    ("images/s", lambda r: f"{r['images_per_s']:.1f}"),
    ("peak memory", lambda r: _memory(r["peak_memory_bytes"])),
    ("GFLOP/s", lambda r: f"{r['gflops']:.1f}"),
    ("of peak", lambda r: f"{100 * r['peak_fraction']:.1f}%" if r["peak_fraction"] is not None else "–"),
    ("vs eager fp32", lambda r: _agreement(r["agreement"])),
)


def _memory(value: int | None) -> str:
    from cnnatlas.analysis.render import human_bytes

    return human_bytes(value) if value is not None else "–"


def _agreement(agreement: dict[str, Any] | None) -> str:
    if not agreement:
        return "(reference)" if agreement is None else "–"
    return f"top-1 {100 * agreement['top1_agreement']:.0f}%, err {agreement['max_relative_error']:.1e}"


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.bench import BACKENDS, MODES
    from cnnatlas.cli.analysis import _positive_int

    p = sub.add_parser(
        "bench",
        help="measured time, throughput, memory and GFLOP/s against batch size",
        description="Time registered networks at several batch sizes (median and IQR of repeated runs).",
    )
    p.add_argument("models", metavar="SOURCE", nargs="+", help="registered names, torchvision:NAME or file.py:NAME")
    p.add_argument("--mode", choices=MODES, default="infer", help="inference, or one SGD training step")
    p.add_argument("--batch", default="1,2,4,8,16,32,64", help="comma-separated batch sizes (default 1,2,…,64)")
    p.add_argument("--input", type=parse_input_size, default=None, metavar="CxHxW", help="default: each model's own")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--backend", choices=BACKENDS, default="eager")
    p.add_argument("--threads", type=_positive_int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="timing budget per batch size")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", default=None, metavar="FILE", help="write the output here instead of printing it")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from cnnatlas.analysis import analyze
    from cnnatlas.bench import BenchResult, bench_model, environment, machine_peak, parse_batches
    from cnnatlas.cli.evaluate import _device
    from cnnatlas.sources import resolve_source

    batches = parse_batches(args.batch)
    device = torch.device(_device(args.device))
    if args.dtype == "fp16" and device.type == "cpu":
        raise InputError("--dtype fp16 needs a GPU; on a CPU use bf16 or fp32")
    out = _check_out(args.out)
    # Every source is checked (built on the meta device, cheaply) before any measurement starts.
    sizes = [
        tuple(args.input or resolve_source(source, meta=True).input_size or (3, 224, 224)) for source in args.models
    ]
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = machine_peak(device, args.dtype)
    result = BenchResult(environment(device, args.threads), {"flops": peak.flops, "derivation": peak.derivation})
    result.environment.update(backend=args.backend, dtype=args.dtype, mode=args.mode)
    for source, size in zip(args.models, sizes):
        torch.manual_seed(0)
        resolved = resolve_source(source)
        macs = int(analyze(resolved.model, input_size=size).totals["macs"])
        result.rows += bench_model(
            resolved.model,
            resolved.name,
            size,
            macs,
            batches=batches,
            mode=args.mode,
            backend=args.backend,
            dtype=args.dtype,
            device=device,
            threads=args.threads,
            peak=peak,
            max_seconds=args.max_seconds,
            measure_memory=not args.no_memory,
        )
    text = render(result.to_dict(), args.format)
    if out is None:
        print(text, end="")
    else:
        from cnnatlas.plot.output import write_output

        write_output(out, text.encode())
    return 0


def _check_out(out: str | None) -> Path | None:
    """Fail before measuring, not after, when the output file cannot be written."""
    if out is None:
        return None
    from cnnatlas.plot.output import check_output_path

    if Path(out).is_dir():
        raise InputError(f"cannot write {out!r}: it is a directory")
    check_output_path(out, directory=True)
    return Path(out)


def render(result: dict[str, Any], fmt: str) -> str:
    """The result as JSON, CSV, markdown or plain text (the table format written to a file)."""
    if fmt == "json":
        return json.dumps(result, indent=1) + "\n"
    headers = [name for name, _ in COLUMNS]
    cells = [[cell(row) for _, cell in COLUMNS] for row in result["results"]]
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["model", "backend", "dtype", "mode", "batch", *_csv_fields()])
        for row in result["results"]:
            writer.writerow(
                [row["model"], row["backend"], row["dtype"], row["mode"], row["batch"]]
                + [row[k] if row[k] is not None else "" for k in _csv_fields()]
            )
        return buffer.getvalue()
    env = result["environment"]
    caption = (
        f"{env['cpu']}, {env['cores']} cores, {env['threads']} threads, torch {env['torch']}, "
        f"{env['device']}; peak {result['peak']['derivation']}"
    )
    if fmt == "markdown":
        from cnnatlas.analysis.render import markdown_table

        return markdown_table(headers, cells) + f"\n\n{caption}\n"
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines) + f"\n{caption}\n"


def _csv_fields() -> tuple[str, ...]:
    return (
        "ms_per_batch",
        "iqr_ms",
        "ms_per_image",
        "images_per_s",
        "repeats",
        "peak_memory_bytes",
        "macs_per_image",
        "gflops",
        "peak_fraction",
    )
