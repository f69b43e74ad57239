"""`cnnatlas experiment list | run | report` and `cnnatlas features`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from cnnatlas.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="train the arms of an experiment that answers a question of the notes (docs/experiments.md)",
        description="Experiments: every arm × seed through the trainer, mean ± std, Welch's t-test, plots.",
    )
    group = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    group.required = True

    listing = group.add_parser("list", help="the experiments: question, claim, models, budgets")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(handler=_cmd_list)

    run = group.add_parser("run", help="run (or resume) one experiment")
    run.add_argument("name", nargs="?", help="experiment name (see `cnnatlas experiment list`)")
    run.add_argument("--data", help="data set name (default: the budget's)")
    run.add_argument("--root", help="folder holding the data set's files")
    run.add_argument("--seeds", type=int, help="seeds per arm (default: the budget's)")
    run.add_argument("--budget", default="quick", help="quick (minutes on a laptop CPU) or full")
    run.add_argument("--arms", help="comma-separated subset of the arms")
    run.add_argument("--out", help="output folder (default: experiments/NAME-TIMESTAMP)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda")
    run.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    run.add_argument("--resume", metavar="OUT_DIR", help="continue an interrupted experiment; finished runs are kept")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(handler=_cmd_run)

    report = group.add_parser("report", help="re-render results.md and the plots from results.json")
    report.add_argument("folders", nargs="+", metavar="OUT_DIR")
    report.set_defaults(handler=_cmd_report)

    f = sub.add_parser(
        "features",
        help="a trained run's activations at one layer (torchvision feature extraction)",
        description="Write the activations of layer NAME for the run's test (or train) split to a .safetensors "
        "file (tensors 'features' and 'labels'); an unknown --layer lists the valid names.",
    )
    f.add_argument("run_dir", metavar="RUN_DIR")
    f.add_argument("--layer", required=True, help="node name, e.g. head.fc1 or stages.2.pool")
    f.add_argument("--split", default="test", help="train or test")
    f.add_argument("--limit", type=int, help="only the first N images")
    f.add_argument("--out", help="output file (default: RUN_DIR/features-LAYER-SPLIT.safetensors)")
    f.set_defaults(handler=_cmd_features)


def _cmd_list(args: argparse.Namespace) -> int:
    from cnnatlas.experiments.spec import EXPERIMENTS

    rows = []
    for exp in EXPERIMENTS.values():
        quick = exp.budgets["quick"]
        rows.append(
            {
                "name": exp.name,
                "question": exp.question,
                "claim": exp.claim,
                "models": exp.models(),
                "arms": [a.name for a in exp.arms_for("quick")],
                "quick": f"{quick.data}, {quick.epochs:g} epochs, {quick.seeds} seeds"
                if exp.trains
                else f"{quick.seeds} seeds, no training",
            }
        )
    if args.format == "json":
        import json

        print(json.dumps(rows, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "name", "question", "claim tested", "models", "quick budget", title=f"{len(rows)} experiments", show_lines=True
    )
    for row in rows:
        table.add_row(row["name"], row["question"], row["claim"], ", ".join(row["models"]), row["quick"])
    Console(file=sys.stdout).print(table)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from cnnatlas.experiments.runner import run_experiment

    if not args.name and not args.resume:
        raise InputError("name an experiment (see `cnnatlas experiment list`) or pass --resume OUT_DIR")
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip()) if args.arms else None
    folder = run_experiment(
        args.name or "",
        out=args.out,
        budget=args.budget,
        seeds=args.seeds,
        data=args.data,
        root=args.root,
        device=args.device,
        jobs=args.jobs,
        arms=arms,
        resume=args.resume,
        callback=None if args.quiet else _progress,
    )
    print((folder / "results.md").read_text())
    return 0


def _progress(event: str, payload: Mapping[str, Any]) -> None:
    if event == "start":
        print(
            f"experiment {payload['experiment']} → {payload['out']}: arms {', '.join(payload['arms'])}, "
            f"seeds {len(payload['seeds'])}",
            file=sys.stderr,
        )
    elif event == "run":
        print(f"  {payload['arm']} seed {payload['seed']} …", file=sys.stderr, flush=True)
    elif event == "run_done":
        test = payload.get("test_error")
        shown = f"test error {100 * test:.2f}%" if test is not None else ""
        print(f"  {payload['arm']} seed {payload['seed']}: {shown} ({payload['train_time_s']:.0f} s)", file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    from cnnatlas.experiments.report import render

    for folder in args.folders:
        for path in render(folder):
            print(path)
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from cnnatlas.features import export_features

    path, shape = export_features(args.run_dir, args.layer, split=args.split, limit=args.limit, out=args.out)
    print(f"{args.layer}: {' × '.join(map(str, shape))} → {path}")
    return 0
