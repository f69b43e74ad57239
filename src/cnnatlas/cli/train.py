"""`cnnatlas train` and `cnnatlas recipes`.

The progress bar lives here, not in the trainer: the trainer reports events to a callback and
this module draws them (rich, on stderr, only on rank 0, silenced by ``--quiet``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Mapping

from cnnatlas.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with its paper's recipe",
        description="Train MODEL with its default recipe (see `cnnatlas recipes`). Under "
        "`torchrun --nproc-per-node N -m cnnatlas train …` it trains with DDP; --batch-size "
        "is then the GLOBAL batch, split evenly over the N processes.",
    )
    p.add_argument("model", help="registered model name (see `cnnatlas models`)")
    p.add_argument("--data", help="data set name (default: the recipe's)")
    p.add_argument("--root", help="folder holding the data set's files")
    p.add_argument("--out", help="run directory to create (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--recipe", help="recipe name (default: the model's)")
    p.add_argument("--epochs", type=float, help="passes over the training split (rescales the schedule)")
    p.add_argument("--batch-size", type=int, help="global batch size (all processes together)")
    p.add_argument("--lr", type=float, help="initial learning rate")
    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="share of the training split held out for validation (default: the recipe's; 0 for none); "
        "plateau schedules watch it, the test split is evaluated once at the end",
    )
    p.add_argument(
        "--val-seed",
        type=int,
        default=0,
        help="seed of the validation carve (default 0: the same held-out images whatever --seed)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any recipe field, e.g. --set weight_decay=0 --set milestones=100,150",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 autocast; fp16 + scaling on old GPUs)")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format (default on: faster convolutions with oneDNN on CPU and on GPUs)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels (bit-exact resume on the CPU)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last complete checkpoint")
    p.add_argument("--checkpoint-every-steps", type=int, metavar="N", help="also checkpoint every N steps mid-epoch")
    p.add_argument(
        "--checkpoint-every-minutes",
        type=float,
        metavar="M",
        help="also checkpoint mid-epoch when M minutes passed since the last checkpoint (default 10; 0: off)",
    )
    p.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    p.add_argument(
        "--limit-test", type=int, metavar="N", help="use only the first N test images (and validation images)"
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data set option, e.g. --data-option num_samples=512 (synthetic)",
    )
    p.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model builder option, e.g. --model-option dropout=0.3 or widths=16,32,64 "
        "(values read as in `cnnatlas summary --help`)",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN_DIR|FILE",
        help="copy every tensor whose name and shape match from a run or weight file (VGG §3.1 warm start)",
    )
    p.add_argument("--init-exclude", metavar="PATTERNS", help="comma-separated names --init-from must not copy")
    p.add_argument(
        "--freeze",
        metavar="PATTERNS",
        help="comma-separated fnmatch patterns of parameters to keep fixed, e.g. 'stages.*'",
    )
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for image folders")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=_cmd_train)

    r = sub.add_parser("recipes", help="list training recipes")
    r.add_argument("name", nargs="?", help="show one recipe in full")
    r.add_argument("--format", choices=("table", "json"), default="table")
    r.set_defaults(handler=_cmd_recipes)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} needs KEY=VALUE, got {item!r}")
        result[key.strip().replace("-", "_")] = value.strip()
    return result


def _cmd_train(args: argparse.Namespace) -> int:
    from cnnatlas.sources import parse_model_options
    from cnnatlas.train.trainer import train

    progress = _Progress(show_progress=not args.quiet)  # warnings are shown even with --quiet
    result = train(
        args.model,
        data=args.data,
        root=args.root,
        out=args.out,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_seed=args.val_seed,
        overrides=_pairs(args.set, "--set"),
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        deterministic=args.deterministic,
        resume=args.resume,
        checkpoint_every_steps=args.checkpoint_every_steps,
        checkpoint_every_minutes=args.checkpoint_every_minutes,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        data_options=parse_model_options(args.data_option, "--data-option"),
        model_options=parse_model_options(args.model_option, "--model-option"),
        num_workers=args.workers,
        init_from=args.init_from,
        init_exclude=args.init_exclude,
        freeze=args.freeze,
        callback=progress,
    )
    progress.close()
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(result.summary())
    return 0


class _Progress:
    """Draws the trainer's events with rich on stderr (rank 0 only)."""

    def __init__(self, *, show_progress: bool = True) -> None:
        self.show_progress = show_progress
        self.bar = None
        self.task = None
        self.main = True
        self.pending: list[str] = []  # transfer/freeze reports arrive before "start"

    def __call__(self, event: str, payload: Mapping[str, Any]) -> None:
        if event == "warning":
            if payload.get("is_main", True):
                print(f"cnnatlas: warning: {payload['message']}", file=sys.stderr)
            return
        if not self.show_progress:
            return
        if event == "start":
            from rich.console import Console

            self.console = Console(stderr=True)
            self.main = bool(payload.get("is_main", True))
            if not self.main:
                return
            verb = "resuming" if payload["resumed"] else "training"
            self.console.print(
                f"[bold]{verb}[/] {payload['model']} · recipe {payload['recipe']} · data {payload['data']} · "
                f"{payload['device']} × {payload['world_size']} → {payload['run_dir']}"
            )
            self.console.print(f"input: {payload['adapter_rule']}")
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            for line in self.pending:
                self.console.print(line)
            self.task = self.bar.add_task(
                "steps", total=payload["total_steps"], completed=payload["global_step"], stats=""
            )
        elif event == "transfer":
            left = payload["left"]
            self.pending.append(
                f"init-from {payload['source']}: copied {len(payload['copied'])} tensors "
                f"({_names(payload['copied'])}); left {len(left)} ({_names(list(left))})"
            )
        elif event == "freeze":
            self.pending.append(f"frozen {len(payload['frozen'])} parameters ({_names(payload['frozen'])})")
        elif not self.main or self.bar is None:
            return
        elif event == "step":
            stats = (
                f"epoch {payload['epoch'] + 1} loss {payload['loss']:.4f} acc {100 * payload['acc']:.1f}% "
                f"lr {payload['lr']:.3g} {payload['images_per_s']:.0f} img/s"
            )
            self.bar.update(self.task, completed=payload["global_step"], stats=stats)
        elif event == "epoch":
            held_out = "".join(
                f" {name} top-1 {100 * payload[f'{split}_top1']:.2f}% loss {payload[f'{split}_loss']:.4f}"
                for split, name in (("val", "validation"), ("test", "test"))
                if payload.get(f"{split}_top1") is not None
            )
            self.bar.console.print(
                f"epoch {payload['epoch']}: train loss {payload['train_loss']:.4f} "
                f"acc {100 * payload['train_top1']:.2f}%"
                f"{held_out} ({payload['epoch_time_s']:.1f} s, {payload['images_per_s']:.0f} img/s)"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _names(names: list[str], shown: int = 8) -> str:
    more = f", … {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more if names else "none"


def _cmd_recipes(args: argparse.Namespace) -> int:
    from cnnatlas.train.recipes import get_recipe, list_recipes

    recipes = [get_recipe(args.name)] if args.name else [get_recipe(n) for n in list_recipes()]
    if args.format == "json":
        payload = [r.to_dict() for r in recipes]
        print(json.dumps(payload[0] if args.name else payload, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    if args.name:
        table = Table("field", "value", title=f"recipe {args.name}")
        for key, value in recipes[0].to_dict().items():
            table.add_row(key, str(value))
    else:
        table = Table(
            "name",
            "data",
            "optimiser",
            "lr",
            "batch",
            "length",
            "schedule",
            "augment",
            "source",
            title=f"{len(recipes)} recipes",
        )
        for r in recipes:
            length = f"{r.iterations:,} it" if r.iterations else f"{r.epochs:g} ep"
            sched = r.schedule + (f" {','.join(f'{m:g}' for m in r.milestones)}" if r.milestones else "")
            table.add_row(
                r.name, r.dataset, r.optimizer, f"{r.lr:g}", str(r.batch_size), length, sched, r.augment, r.source
            )
    Console(file=sys.stdout).print(table)
    return 0
