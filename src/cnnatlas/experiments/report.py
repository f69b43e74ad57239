"""results.json → results.md and the plots (``cnnatlas experiment report`` re-renders them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cnnatlas.experiments import plots
from cnnatlas.train.checkpoint import atomic_write_bytes

METRIC_LABELS = {
    "test_error": "test error",
    "train_error": "training error",
    "val_error": "validation error",
    "step_time_s": "training step (s)",
    "steps_to_target": "steps to 25% training error",
    "inference_ms_per_image": "inference ms/image",
    "single_scale_test_error": "single-scale test error",
    "multi_scale_test_error": "multi-scale test error",
    "ensemble_error": "ensemble test error",
}
PERCENT = {
    "test_error",
    "train_error",
    "val_error",
    "single_scale_test_error",
    "multi_scale_test_error",
    "ensemble_error",
}


def fmt(metric: str, summary: Mapping[str, Any] | None) -> str:
    """ "12.3 ± 0.4 %" for error rates, "1.234 ± 0.010" otherwise."""
    if not summary or summary.get("mean") is None:
        return "–"
    mean, std = float(summary["mean"]), float(summary.get("std") or 0.0)
    if metric in PERCENT:
        return f"{100 * mean:.1f} ± {100 * std:.1f} %"
    if abs(mean) >= 100:
        return f"{mean:,.0f} ± {std:,.0f}"
    return f"{mean:.3g} ± {std:.2g}"


def _metric(entry: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    return entry.get("metrics", {}).get(key) or entry.get("measured", {}).get(key)


def verdict(entry: Mapping[str, Any]) -> str:
    test = entry.get("vs_baseline")
    if not test:
        return "baseline"
    if test.get("p") is None:
        return "too few seeds to test"
    sign = "higher" if (test["difference"] or 0) > 0 else "lower"
    if test["significant"]:
        return f"{sign} (p = {test['p']:.3f})"
    return f"no measurable difference (p = {test['p']:.2f})"


def table(results: Mapping[str, Any]) -> str:
    """The per-arm Markdown table: cost, the primary metric, the other metrics, the verdict."""
    metric = results["metric"]
    shown = [metric] + [
        m
        for m in (
            "test_error",
            "train_error",
            "val_error",
            "single_scale_test_error",
            "multi_scale_test_error",
            "steps_to_target",
            "inference_ms_per_image",
        )
        if m != metric and any(_metric(e, m) for e in results["arms"].values())
    ]
    head = (
        ["arm", "params", "MACs"]
        + [METRIC_LABELS.get(m, m) for m in shown]
        + ["img/s (train)", f"vs {next(iter(results['arms']))}"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in results["arms"].items():
        rate = _metric(entry, "images_per_s")
        cells = [f"`{name}`", f"{entry['params']:,}", f"{entry['macs'] / 1e6:,.2f} M"]
        cells += [fmt(m, _metric(entry, m)) for m in shown]
        cells += [f"{rate['mean']:.0f}" if rate else "–", verdict(entry)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extra_markdown(results: Mapping[str, Any]) -> str:
    """Short tables for the extra measurements."""
    extra = results.get("extra", {})
    parts = []
    if "timing" in extra:
        rows = ["| arm | MACs | inference ms/image (batch 64) |", "|---|---|---|"]
        for arm, t in extra["timing"]["arms"].items():
            rows.append(f"| `{arm}` | {t['macs'] / 1e6:.2f} M | {t['ms_per_image']:.3f} |")
        parts.append("Measured time against MACs:\n\n" + "\n".join(rows))
    if "head_share" in extra:
        rows = ["| arm | head parameters | share of all parameters |", "|---|---|---|"]
        for arm, h in extra["head_share"].items():
            rows.append(f"| `{arm}` | {h['head_params']:,} | {100 * h['head_share']:.1f} % |")
        parts.append("\n".join(rows))
    if "steps_to_target" in extra:
        s = extra["steps_to_target"]
        rows = [
            f"| arm | steps to {100 * s['target_train_error']:.0f}% training error (per seed) | reached |",
            "|---|---|---|",
        ]
        for arm, a in s["arms"].items():
            rows.append(f"| `{arm}` | {', '.join('–' if v is None else str(v) for v in a['steps'])} | {a['reached']} |")
        parts.append("\n".join(rows))
    if "gradient_norms" in extra:
        rows = ["| arm | gradient norm per weight layer at initialisation (input → output) |", "|---|---|"]
        for arm, g in extra["gradient_norms"]["arms"].items():
            rows.append(f"| `{arm}` | {', '.join(f'{v:.2e}' for v in g['norms'])} |")
        parts.append("\n".join(rows))
    if "ensemble" in extra:
        rows = ["| arm | members | ensemble test error | single models |", "|---|---|---|---|"]
        for arm, e in extra["ensemble"]["arms"].items():
            for k, err in zip(e["members"], e["ensemble_error"]):
                singles = ", ".join(f"{100 * v:.1f}" for v in e["single_errors"]) if k == 1 else ""
                rows.append(f"| `{arm}` | {k} | {100 * err:.1f} % | {singles} |")
        parts.append("\n".join(rows))
    if "multiscale" in extra:
        rows = ["| arm | single-scale test error | multi-scale test error (7/8, 1, 9/8) |", "|---|---|---|"]
        for arm, m in extra["multiscale"]["arms"].items():
            single = ", ".join(f"{100 * v:.1f}" for v in m["single_scale"])
            multi = ", ".join(f"{100 * v:.1f}" for v in m["multi_scale"])
            rows.append(f"| `{arm}` | {single} | {multi} |")
        parts.append("\n".join(rows))
    if "model_parallel" in extra:
        mp = extra["model_parallel"]
        rows = ["| seed | max abs logit difference | bytes exchanged per image |", "|---|---|---|"]
        for seed, s in mp["seeds"].items():
            rows.append(f"| {seed} | {s['max_abs_logit_difference']:.2e} | {s['exchanged_bytes_per_image']:,.0f} |")
        parts.append(f"Devices {', '.join(mp['devices'])}, batch {mp['batch']}:\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def setting_line(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    data = results["data"]
    options = ", ".join(f"{k}={v}" for k, v in data.get("options", {}).items())
    return (
        f"budget `{results['budget']}`, seeds {len(results['seeds'])}, data `{data['name']}`"
        + (f" ({options})" if options else "")
        + (f", {results['epochs']:g} epochs" if results.get("epochs") else "")
        + f"; {m['cpu']}, {m['cores']} cores, torch {m['torch']}; {results['created'][:10]}; "
        f"{results.get('total_wall_time_s', 0):.0f} s in all"
    )


def markdown(results: Mapping[str, Any]) -> str:
    lines = [
        f"# Experiment `{results['experiment']}`",
        "",
        f"**Question.** {results['question']}",
        "",
        f"**Claim tested.** {results['claim']}",
        "",
        f"**Setting.** {setting_line(results)}.",
        "",
        table(results),
        "",
        f"Significance: {results['significance']}.",
        "",
        f"**Finding.** {finding(results)}",
    ]
    extra = extra_markdown(results)
    if extra:
        lines += ["", extra]
    return "\n".join(lines) + "\n"


def _mean_curve(runs: list[Mapping[str, Any]], key: str) -> tuple[list[float], list[float], list[float]]:
    from cnnatlas.experiments.stats import summary

    epochs = sorted({p["epoch"] for r in runs for p in r["curve"] if p.get(key) is not None})
    xs, ys, es = [], [], []
    for epoch in epochs:
        values = [p[key] for r in runs for p in r["curve"] if p["epoch"] == epoch and p.get(key) is not None]
        s = summary(values)
        xs.append(float(epoch))
        ys.append(100 * float(s["mean"]))
        es.append(100 * float(s["std"]))
    return xs, ys, es


def render(folder: str | os.PathLike[str]) -> list[Path]:
    """Write results.md and the plots from results.json; returns the files written."""
    from cnnatlas.experiments.runner import read_results

    folder = Path(folder)
    results = read_results(folder)
    written = []
    name = results["experiment"]
    arms = results["arms"]
    if any(e["runs"] for e in arms.values()):
        series: dict[str, Any] = {}
        for arm, entry in arms.items():
            if entry["runs"]:
                series[f"{arm} train"] = (*_mean_curve(entry["runs"], "train_error"), "-")
                series[f"{arm} test"] = (*_mean_curve(entry["runs"], "test_error"), "--")
        written.append(
            plots.curves(
                series,
                folder / "curves.png",
                xlabel="epoch",
                ylabel="error (%)",
                title=f"{name}: training (solid) and test (dashed) error",
            )
        )
    metric = results["metric"]
    summaries = [(arm, _metric(e, metric)) for arm, e in arms.items()]
    if all(s and s.get("mean") is not None for _, s in summaries):
        scale = 100 if metric in PERCENT else 1
        written.append(
            plots.bars(
                [a for a, _ in summaries],
                [scale * s["mean"] for _, s in summaries],  # type: ignore[index]
                [scale * (s["std"] or 0) for _, s in summaries],  # type: ignore[index]
                folder / "bars.png",
                ylabel=METRIC_LABELS.get(metric, metric) + (" (%)" if scale == 100 else ""),
                title=f"{name}: mean ± std over {len(results['seeds'])} seeds",
            )
        )
    written += _extra_plots(results, folder)
    path = folder / "results.md"
    atomic_write_bytes(path, markdown(results).encode())
    return [path, *written]


def _extra_plots(results: Mapping[str, Any], folder: Path) -> list[Path]:
    extra = results.get("extra", {})
    name = results["experiment"]
    written = []
    if "steps_to_target" in extra:
        series = {}
        for arm, a in extra["steps_to_target"]["arms"].items():
            for i, curve in enumerate(a["curves"]):
                if curve:
                    series[f"{arm} seed {i}"] = ([p[0] for p in curve], [100 * p[1] for p in curve], None, "-")
        if series:
            written.append(
                plots.curves(
                    series,
                    folder / "steps.png",
                    xlabel="step",
                    ylabel="training error, 20-step mean (%)",
                    title=f"{name}: training error per step",
                )
            )
    if "gradient_norms" in extra:
        series = {
            arm: (list(range(1, len(g["norms"]) + 1)), g["norms"], None, "-o")
            for arm, g in extra["gradient_norms"]["arms"].items()
        }
        written.append(
            plots.curves(
                series,
                folder / "gradients.png",
                xlabel="weight layer (input → output)",
                ylabel="gradient norm at init",
                title=f"{name}: gradient norm per layer",
                logy=True,
            )
        )
    if "ensemble" in extra:
        series = {
            arm: (e["members"], [100 * v for v in e["ensemble_error"]], None, "-o")
            for arm, e in extra["ensemble"]["arms"].items()
        }
        written.append(
            plots.curves(
                series,
                folder / "ensemble.png",
                xlabel="models averaged",
                ylabel="test error (%)",
                title=f"{name}: softmax-averaged ensembles",
            )
        )
    return written


def _pts(metric: str, value: float) -> str:
    return f"{100 * value:+.1f} points" if metric in PERCENT else f"{value:+.3g}"


def _runs_that_did_not_learn(arms: Mapping[str, Any]) -> list[str]:
    """``arm`` seed N for every run whose training error was ≥ 80% at the first epoch and still
    there (within 2 points) at the last: a network stuck at chance, e.g. ReLU units that stopped
    firing for every input and so get no gradient."""
    stuck = []
    for name, entry in arms.items():
        for run in entry.get("runs", []):
            curve = [point["train_error"] for point in run.get("curve", []) if point.get("train_error") is not None]
            if len(curve) >= 2 and min(curve) >= 0.8 and curve[0] - curve[-1] < 0.02:
                stuck.append(f"`{name}` seed {run['seed']}")
    return stuck


def finding(results: Mapping[str, Any]) -> str:
    """What the evidence shows, in one or two sentences derived from the numbers and the
    significance rule (never more than the rule allows)."""
    metric = results["metric"]
    label = METRIC_LABELS.get(metric, metric)
    arms = results["arms"]
    baseline = next(iter(arms))
    seeds = len(results["seeds"])
    called, quiet = [], []
    for name, entry in list(arms.items())[1:]:
        test = entry.get("vs_baseline") or {}
        if test.get("significant"):
            direction = "higher" if test["difference"] > 0 else "lower"
            called.append(f"`{name}` {direction} ({_pts(metric, test['difference'])}, p = {test['p']:.3f})")
        elif test.get("p") is not None:
            quiet.append(f"`{name}`")
    sentences = []
    if called:
        sentences.append(f"Against `{baseline}`, {label} was " + "; ".join(called) + f" over {seeds} seeds")
    if quiet:
        if called:
            sentences.append(f"{', '.join(quiet)}: no measurable difference at this scale")
        else:
            sentences.append(f"No measurable difference in {label} between the arms at this scale ({seeds} seeds)")
    stuck = _runs_that_did_not_learn(arms)
    if stuck:
        sentences.append(
            "Runs that did not learn (training error stayed above 80% and did not fall from the first epoch to the "
            "last; they count in the mean): " + ", ".join(stuck)
        )
    extra = results.get("extra", {})
    if "timing" in extra:
        t = extra["timing"]["arms"]
        if len(t) >= 2:
            ordered = sorted(t.items(), key=lambda kv: kv[1]["macs"])
            (a, ta), (b, tb) = ordered[0], ordered[-1]
            sentences.append(
                f"`{b}` needs {tb['macs'] / ta['macs']:.1f}× the MACs of `{a}` and took "
                f"{tb['ms_per_image'] / ta['ms_per_image']:.1f}× its measured inference time"
            )
    if "steps_to_target" in extra:
        s = extra["steps_to_target"]["arms"]
        parts = []
        for name, a in s.items():
            hit = [v for v in a["steps"] if v is not None]
            parts.append(f"`{name}` {sum(hit) / len(hit):.0f} steps ({a['reached']})" if hit else f"`{name}` never")
        sentences.append("Steps to 25% training error: " + ", ".join(parts))
    if "ensemble" in extra:
        for name, e in extra["ensemble"]["arms"].items():
            singles = e["single_errors"]
            sentences.append(
                f"Averaging {len(singles)} `{name}` nets gave {100 * e['ensemble_error'][-1]:.1f}% test error against "
                f"{100 * sum(singles) / len(singles):.1f}% for a single one on average "
                f"(best single {100 * min(singles):.1f}%)"
            )
    if "multiscale" in extra:
        for name, m in extra["multiscale"]["arms"].items():
            single, multi = m["single_scale"], m["multi_scale"]
            verdict_ = "a difference" if m["paired"]["significant"] else "no measurable difference"
            sentences.append(
                f"`{name}`: {100 * sum(single) / len(single):.1f}% single-scale vs "
                f"{100 * sum(multi) / len(multi):.1f}% multi-scale test error ({verdict_})"
            )
    if "model_parallel" in extra:
        mp = extra["model_parallel"]
        diff = max(s["max_abs_logit_difference"] for s in mp["seeds"].values())
        moved = next(iter(mp["seeds"].values()))["exchanged_bytes_per_image"]
        times = {a: arms[a].get("measured", {}).get("step_time_s", {}).get("mean") for a in arms}
        sentences.append(
            f"The two-tower form gave the same logits (largest difference {diff:.1e}) and exchanged "
            f"{moved / 1024:.0f} KiB per image (both directions, fp32)"
        )
        if all(times.values()):
            sentences.append(
                f"A training step took {times['two-devices']:.2f} s split vs {times['one-device']:.2f} s on one "
                f"device ({mp['devices'][0]} ×2: both 'devices' share the same cores, so no speed-up is possible here)"
            )
    return ". ".join(sentences) + "."
