"""`cnnatlas evaluate` and `cnnatlas predict`.

``cnnatlas evaluate RUN_DIR --format json`` prints ``{"top1": 0.987, "top5": 0.999, "loss": …,
"n": 1000, …}`` (fractions, not percent) plus the protocol, data set and split it used. The
run's own data set and ``--root`` (from its config.json) are the defaults. ``--split val`` is the
validation split the run carved from its training split (fraction and seed from config.json),
``--split train`` the rest of the training split, ``--split test`` the held-out test split.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from cnnatlas.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    from cnnatlas.train.evaluate import TTA_PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="top-1/top-5/loss of a trained run, with the papers' test-time protocols",
        description="Evaluate a run directory's newest checkpoint (or an ensemble of runs).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `cnnatlas train`")
    p.add_argument("--data", default=None, help="data set name (default: the run's)")
    p.add_argument("--root", default=None, help="data folder (default: the run's)")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="test",
        help="test (default); val: the validation images the run held out of its training split; "
        "train: the images it trained on",
    )
    p.add_argument(
        "--tta",
        choices=TTA_PROTOCOLS,
        default="none",
        help="test-time protocol: none (centre), flip, 10crop (AlexNet §4.1), multiscale (VGG §3.2)",
    )
    p.add_argument(
        "--ensemble",
        nargs="+",
        default=[],
        metavar="RUN_DIR",
        help="further runs whose softmax outputs are averaged with RUN_DIR's",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    _add_fast_options(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=_cmd_evaluate)

    q = sub.add_parser(
        "predict",
        help="top-k classes of image files under a trained run",
        description="Classify image files with a run directory's newest checkpoint.",
    )
    q.add_argument("run_dir", metavar="RUN_DIR")
    q.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, …)")
    q.add_argument("--topk", type=int, default=5)
    q.add_argument("--tta", choices=TTA_PROTOCOLS, default="none")
    _add_fast_options(q)
    q.add_argument("--format", choices=("table", "json"), default="table")
    q.set_defaults(handler=_cmd_predict)


def _add_fast_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-fast",
        dest="fast",
        action="store_false",
        help="run the network as trained (eager) instead of the fast inference copy",
    )
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="fast path precision: fp32 (default), bf16, or auto (bf16 only where the hardware has it)",
    )


def fast_run(run: Any, device: str, dtype: str) -> Any:
    """The run with its network replaced by the fast inference copy (cnnatlas.fast), checked
    on a random batch against the eager network first; a copy that disagrees is an error."""
    import dataclasses

    import torch

    from cnnatlas.errors import CnnAtlasError
    from cnnatlas.fast import check_fast, fast_model
    from cnnatlas.train.evaluate import _run_data_shape

    data_shape = _run_data_shape(run)
    images = torch.randint(0, 256, (4, *data_shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    example = run.adapter(images)
    fast = fast_model(run.model, example[:1], dtype=dtype, device=device)
    agreement = check_fast(run.model, fast, example)
    if not agreement.ok:
        raise CnnAtlasError(
            f"the fast inference copy of {run.config['model']['name']} disagrees with the eager network "
            f"(relative logit error {agreement.max_relative_error:.1e}); rerun with --no-fast"
        )
    return dataclasses.replace(run, model=fast)


def _device(name: str) -> str:
    """cpu, cuda, cuda:N or auto; anything else torch.device would accept (meta, mps, …) is refused."""
    from cnnatlas.train.distributed import resolve_device

    if name != "auto" and name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    if name.startswith("cuda:") and not name[5:].isdigit():
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    return str(resolve_device(name))


def _json_safe(result: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such a value becomes null, and ``null_because`` says why."""
    safe = dict(result)
    reasons = {}
    for key, value in result.items():
        if isinstance(value, float) and not math.isfinite(value):
            safe[key] = None
            reasons[key] = f"the {key} is {value} (the model's outputs are not finite)"
    if reasons:
        safe["null_because"] = reasons
    return safe


def _warn_skipped(runs: list[Any]) -> None:
    from cnnatlas.cli import warn

    for run in runs:
        for message in run.skipped:
            warn(message)


def _data_spec(config: dict[str, Any]) -> dict[str, Any]:
    data = config.get("data")
    if isinstance(data, str):
        return {"name": data}
    return dict(data) if isinstance(data, dict) else {}


def load_eval_dataset(config: dict[str, Any], *, name: str | None, root: str | None, split: str) -> Any:
    """The data set to evaluate on: ``--data``/``--root`` or else the run's own. ``split`` is
    ``train``, ``val`` or ``test``; ``train`` and ``val`` of the run's own data set are the two
    parts of its training split, carved as config.json's ``data.validation`` records."""
    from cnnatlas.data import load_dataset
    from cnnatlas.data.validation import carve_validation

    spec = _data_spec(config)
    data_name = name or spec.get("name")
    if not data_name:
        raise InputError("the run's config.json names no data set; pass --data NAME")
    own_data = data_name == spec.get("name")
    options: dict[str, Any] = {}
    if own_data:
        options = dict(spec.get("options") or {})
        root = root if root is not None else spec.get("root")
    if split == "test":
        return load_dataset(data_name, root=root, split="test", **options)
    validation = spec.get("validation") or {}
    fraction = float(validation.get("fraction") or 0.0) if own_data else 0.0
    if split == "val" and fraction == 0:
        reason = "was trained without a validation split (--val-fraction 0)" if own_data else "did not train on it"
        raise InputError(f"--split val: the run {reason}, so it has no validation images of {data_name!r}")
    train_part, val_part = carve_validation(
        load_dataset(data_name, root=root, split="train", **options), fraction, int(validation.get("seed", 0))
    )
    return val_part if split == "val" else train_part


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnatlas.train.evaluate import ensemble_evaluate, run_eval_sizes
    from cnnatlas.train.run import load_run

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = _device(args.device)
    runs = [load_run(path) for path in [args.run_dir, *args.ensemble]]
    _warn_skipped(runs)
    if args.fast:
        runs = [fast_run(run, device, args.dtype) for run in runs]
    dataset = load_eval_dataset(runs[0].config, name=args.data, root=args.root, split=args.split)
    crop_size, folder_size = run_eval_sizes(runs[0].config)
    result = ensemble_evaluate(
        runs,
        dataset,
        tta=args.tta,
        batch_size=args.batch_size,
        device=device,
        crop_size=crop_size,
        folder_size=folder_size,
    )
    result.update(
        inference="eager" if not args.fast else f"fast ({args.dtype})",
        tta=args.tta,
        data=getattr(dataset, "name", args.data),
        split=args.split,
        runs=[str(p) for p in [args.run_dir, *args.ensemble]],
    )
    if args.format == "json":
        print(json.dumps(_json_safe(result), allow_nan=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"{result['data']} / {args.split}, tta={args.tta}" + (f", ensemble of {len(runs)}" if len(runs) > 1 else "")
    table = Table("run", "n", "top-1", "top-5", "loss", title=title)
    table.add_row(
        ", ".join(result["runs"]),
        f"{result['n']:,}",
        f"{100 * result['top1']:.2f}%",
        f"{100 * result['top5']:.2f}%",
        f"{result['loss']:.4f}",
    )
    Console().print(table)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from cnnatlas.train.evaluate import predict
    from cnnatlas.train.run import load_run

    run = load_run(args.run_dir)
    _warn_skipped([run])
    if args.fast:
        run = fast_run(run, "cpu", args.dtype)
    results = predict(run, args.images, topk=args.topk, tta=args.tta)
    if args.format == "json":
        print(json.dumps(results))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for item in results:
        table = Table("rank", "class", "probability", title=item["image"])
        for rank, pred in enumerate(item["predictions"], 1):
            table.add_row(str(rank), pred["class"], f"{pred['probability']:.4f}")
        console.print(table)
    return 0
