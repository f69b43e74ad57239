"""`cnnatlas export RUN_DIR|MODEL --format onnx|torchscript|safetensors`: a verified file.

From a run directory the trained weights of its newest checkpoint are exported; from a
registered name, fresh weights (seed 0) or ``--weights FILE``. The checks that ran and the
file's input/output names and shapes are printed (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from cnnatlas.cli.analysis import parse_input_size


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.export import DEFAULT_OPSET, FORMATS

    p = sub.add_parser(
        "export",
        help="export a run or a registered model to ONNX, TorchScript or safetensors (verified)",
        description="Export a network; the file is written only after it has been verified.",
    )
    p.add_argument("source", metavar="RUN_DIR|MODEL", help="a directory written by `cnnatlas train`, or a model name")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", default=None, metavar="FILE", help="default: MODEL.onnx / .pt / .safetensors here")
    p.add_argument("--fold-bn", action="store_true", help="fold eval batch norms into their convolutions")
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: a batch dimension of any size")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript", help="ONNX exporter")
    p.add_argument("--weights", default=None, metavar="FILE", help="weights for a registered model (.pth/.safetensors)")
    p.add_argument("--input", type=parse_input_size, default=None, metavar="CxHxW", help="default: the model's own")
    p.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from cnnatlas.errors import InputError
    from cnnatlas.export import EXTENSIONS, ModelSpec, export

    source = Path(args.source)
    if source.is_dir():
        if args.weights:
            raise InputError("--weights applies to a registered model; a run directory brings its own weights")
        from cnnatlas.train.evaluate import _run_data_shape
        from cnnatlas.train.run import load_run

        run = load_run(source)
        model_cfg = run.config["model"]
        name = model_cfg["name"]
        # The network's own input: the adapter's output side (e.g. 32×32 for LeNet-5 on padded MNIST).
        size = args.input or _network_input(run.model, _run_data_shape(run), run.adapter)
        spec = ModelSpec(name, dict(model_cfg.get("options") or {}), tuple(run.classes), tuple(size))
        model = run.model
    else:
        from cnnatlas.registry import create_model, lookup

        info = lookup(args.source).info  # an unknown name (or a missing folder) is one error line
        torch.manual_seed(0)
        model = create_model(args.source)
        if args.weights:
            from cnnatlas.weights import load_weights

            load_weights(model, args.weights)
        spec = ModelSpec(args.source, {}, (), tuple(args.input or info.input_size))
    out = Path(args.out) if args.out else Path(f"{spec.name}{EXTENSIONS[args.format]}")
    lock = contextlib.nullcontext()
    if source.is_dir() and out.resolve().parent.is_relative_to(source.resolve()):
        from cnnatlas.train.lock import lock_run_dir

        lock = lock_run_dir(source)  # writing into the run folder: its one writer, while it writes
    with lock:
        report = export(
            model,
            spec,
            out,
            args.format,
            fold_bn=args.fold_bn,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            exporter=args.exporter,
        )
    print(f"wrote {report.path} ({report.format}, {report.path.stat().st_size:,} bytes)")
    for label, values in (("input", report.inputs), ("output", report.outputs)):
        for value_name, shape in values:
            print(f"  {label:6s} {value_name}: [{', '.join(map(str, shape))}]")
    for check in report.checks:
        print(f"  verified: {check}")
    if report.max_relative_error is not None:
        print(f"  max relative logit error: {report.max_relative_error:.2e}")
    return 0


def _network_input(model: object, data_shape: tuple[int, int, int], adapter: object) -> tuple[int, int, int]:
    """The C×H×W the network sees after the run's input adapter (padding or resizing)."""
    import torch

    probe = torch.zeros((1, *data_shape), dtype=torch.uint8)
    return tuple(adapter(probe).shape[1:])  # type: ignore[operator,return-value]
