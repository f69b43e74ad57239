"""Record the experiments and write docs/experiments.md from their results.json files.

    python benchmarks/record_experiments.py run [NAME ...] --out DIR [--budget quick]
    python benchmarks/record_experiments.py docs --out DIR

``run`` trains every named experiment (all by default) that has no results.json under DIR yet,
resuming any that was interrupted. ``docs`` rewrites docs/experiments.md from whatever DIR
holds — tables, the finding sentence and the plots (copied to docs/experiments/) — and lists
the experiments without a recording as "not yet recorded". Nothing in the page is typed in.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cnnatlas.experiments.report import extra_markdown, finding, setting_line, table
from cnnatlas.experiments.runner import read_results, run_experiment
from cnnatlas.experiments.spec import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "experiments.md"
PICTURES = ROOT / "docs" / "experiments"
PLOTS = ("curves.png", "bars.png", "steps.png", "gradients.png", "ensemble.png")

INTRO = """# Experiments: the notes' questions answered by training

`cnnatlas experiment run NAME` trains every arm of an experiment for several seeds through the
ordinary trainer and reports mean ± standard deviation over seeds, every seed's value, parameters,
MACs, training time and images/s, and Welch's two-sided t-test of each arm against the first
(baseline) arm: a difference is called a difference only when p < 0.05. `cnnatlas experiment list`
shows the experiments; `cnnatlas experiment report OUT_DIR` re-renders the tables and plots.

Budgets. `quick` is sized for a 2-core laptop CPU: 2,000 of the bundled digits (clean, or the
cluttered task where the experiment needs it), 3 epochs at batch 32, 3 seeds (5 for the ensemble).
At this scale many architectural differences are smaller than the seeds' spread, and the page says
so. `full` trains on the cluttered task (all 8,000 digits on a 40×40 canvas among clutter, see
docs/data.md) for 30 epochs with 5 seeds and adds the deeper arms (e.g. plain/ResNet-110); it is
meant for a GPU or a long CPU run, and takes `--data cifar10 --root DIR` as well.

The numbers below were recorded with `cnnatlas experiment run NAME --out DIR/NAME` (the call
`benchmarks/record_experiments.py run` makes) and this page was written by
`benchmarks/record_experiments.py docs --out DIR`, on a 2-core AMD EPYC VM (torch 2.14.1, CPU
only) that other jobs shared: the load average printed with each experiment is above the core
count (about 34 for the first ones recorded, 5–9 for the rest), so absolute times are pessimistic
and only ratios measured within one experiment mean anything. Only the `quick` budget was
recorded. At that budget some runs of the small networks without batch normalisation stay at
chance for all three epochs; each experiment names them ("did not learn"). They count in the mean
and widen the spread — part of the answer: such nets, trained briefly, are fragile.
"""


def _section(name: str, folder: Path) -> str:
    exp = EXPERIMENTS[name]
    head = f"## `{name}`\n\n**Question.** {exp.question}\n\n**Paper claim.** {exp.claim}\n\n"
    path = folder / name / "results.json"
    if not path.is_file():
        return head + f"**Not yet recorded.** Run `cnnatlas experiment run {name}` to produce it.\n"
    results = read_results(folder / name)
    load = results["machine"].get("load_average")
    lines = [
        head + f"**Evidence ({results['budget']} budget).** {finding(results)}",
        "",
        f"Setting: {setting_line(results)}" + (f"; load average {load[0]:.1f} at the end." if load else "."),
        "",
        table(results),
    ]
    extra = extra_markdown(results)
    if extra:
        lines += ["", extra]
    pictures = []
    for plot in PLOTS:
        source = folder / name / plot
        if source.is_file():
            target = PICTURES / f"{name}-{plot}"
            shutil.copyfile(source, target)
            pictures.append(f"![{name} {plot[:-4]}](experiments/{target.name})")
    if pictures:
        lines += ["", " ".join(pictures)]
    lines += ["", f"Reproduce: `cnnatlas experiment run {name} --budget {results['budget']}`."]
    return "\n".join(lines) + "\n"


def write_docs(folder: Path) -> Path:
    PICTURES.mkdir(parents=True, exist_ok=True)
    sections = [_section(name, folder) for name in EXPERIMENTS]
    PAGE.write_text(INTRO + "\n" + "\n".join(sections))
    return PAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "docs"))
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    parser.add_argument("--out", required=True, type=Path, help="folder holding one sub-folder per experiment")
    parser.add_argument("--budget", default="quick")
    args = parser.parse_args(argv)
    if args.action == "docs":
        print(write_docs(args.out))
        return 0
    for name in args.names or list(EXPERIMENTS):
        folder = args.out / name
        if (folder / "results.json").is_file():
            continue
        if (folder / "experiment.json").is_file():
            run_experiment("", resume=folder)
        else:
            run_experiment(name, out=folder, budget=args.budget)
        print(f"{name}: {folder / 'results.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
