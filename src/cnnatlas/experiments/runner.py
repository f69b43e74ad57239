"""Run an experiment: every arm × seed through the trainer, then results.json, results.md, plots.

``OUT/``::

    experiment.json        the settings (experiment, budget, seeds, data), written first
    runs/ARM/seedK/        one ordinary training run directory per arm and seed (checkpoints,
                           metrics, curves; steps.json: the training loss/accuracy of every step)
    results.json           per arm: params, MACs, every seed's metrics, mean ± std, the test
                           against the baseline arm; the extra measurements
    results.md, *.png      the table and the plots (re-rendered by ``cnnatlas experiment report``)

Resume: a run whose metrics reach its last step is finished and is read back, never retrained;
a run with a checkpoint continues from it (the trainer's exact resume); a run that died before
its first checkpoint starts again. Errors in one arm stop the experiment with the finished arms
kept on disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from cnnatlas.errors import CnnAtlasError, InputError
from cnnatlas.experiments import stats
from cnnatlas.experiments.spec import BUDGETS, Arm, Experiment, get_experiment
from cnnatlas.train.checkpoint import atomic_write_bytes, atomic_write_json

SETTINGS_FILE = "experiment.json"
RESULTS_FILE = "results.json"
STEPS_FILE = "steps.json"
SCHEMA = 1
Callback = Callable[[str, Mapping[str, Any]], None]


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_dir_of(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / arm / f"seed{seed}"


# -- settings --------------------------------------------------------------------------------------
def _settings(
    exp: Experiment, budget: str, seeds: int | None, data: str | None, root: str | None, arms: tuple[str, ...] | None
) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise InputError(f"unknown budget {budget!r}: choose {' or '.join(BUDGETS)}")
    plan = exp.budgets[budget]
    count = plan.seeds if seeds is None else seeds
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputError(f"--seeds must be a positive integer, got {seeds!r}")
    if data is not None:
        from cnnatlas.data import _entry

        data = _entry(data)[0]  # InputError for an unknown data set, with suggestions
        if exp.fixed_data and not data.startswith("cluttered-mnist"):
            raise InputError(
                f"experiment {exp.name!r} sets digit subsets or scale jitter, which only the cluttered-mnist "
                f"data sets have; --data {data} cannot replace them"
            )
        if not exp.trains:
            raise InputError(f"experiment {exp.name!r} measures a network on random input and takes no --data")
    chosen = exp.arms_for(budget, arms)
    name = data or plan.data
    same_data = name == plan.data or (name.startswith("cluttered-mnist") and plan.data.startswith("cluttered-mnist"))
    return {
        "schema": SCHEMA,
        "experiment": exp.name,
        "budget": budget,
        "seeds": list(range(count)),
        "arms": [a.name for a in chosen],
        "data": {
            "name": name,
            "root": root,
            # budget data options describe the bundled digits; another data set gets none
            "options": dict(plan.data_options) if same_data else {},
        },
        "epochs": plan.epochs,
        "recipe": "experiment",
        "recipe_overrides": dict(plan.recipe),
        "arm_data_options": {k: dict(v) for k, v in plan.arm_data_options.items()},
        "limit_train": plan.limit_train,
        "limit_test": plan.limit_test,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{str(path)!r} is unreadable: {exc}") from None


# -- one run ---------------------------------------------------------------------------------------
def _finished(run_dir: Path) -> bool:
    from cnnatlas.train.run import read_metrics

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return False
    rows = read_metrics(run_dir)
    total = _read_json(config_path).get("total_steps")
    return bool(rows) and total is not None and rows[-1].get("step") == total


def _step_recorder(run_dir: Path, keep_until: int | None) -> tuple[Callback, list[dict[str, float]]]:
    """A trainer callback that keeps every step's loss and accuracy and writes steps.json at
    each epoch end (right after the trainer's own checkpoint, so both agree on resume)."""
    steps: list[dict[str, float]] = []
    path = run_dir / STEPS_FILE
    if keep_until is not None and path.is_file():
        steps = [s for s in _read_json(path).get("steps", []) if s["step"] <= keep_until]

    def callback(event: str, payload: Mapping[str, Any]) -> None:
        if event == "step":
            steps.append({"step": payload["global_step"], "loss": payload["loss"], "acc": payload["acc"]})
        elif event == "epoch":
            atomic_write_json(path, {"steps": steps})

    return callback, steps


def _train_one(
    exp: Experiment, arm: Arm, seed: int, settings: Mapping[str, Any], out: Path, device: str
) -> dict[str, Any]:
    from cnnatlas.train.checkpoint import list_checkpoints
    from cnnatlas.train.run import read_metrics
    from cnnatlas.train.trainer import train

    run_dir = run_dir_of(out, arm.name, seed)
    if not _finished(run_dir):
        resume = None
        keep_until = None
        if (run_dir / "config.json").is_file() and list_checkpoints(run_dir):
            resume = str(run_dir)
            rows = read_metrics(run_dir)
            keep_until = rows[-1]["step"] if rows else 0
        elif run_dir.exists():
            shutil.rmtree(run_dir)  # died before its first checkpoint: nothing to keep
        callback, _ = _step_recorder(run_dir, keep_until)
        data = settings["data"]
        options: dict[str, Any] = {
            "data": data["name"],
            "root": data["root"],
            "recipe": settings["recipe"],
            "epochs": settings["epochs"],
            "overrides": {**settings["recipe_overrides"], **dict(arm.recipe)},
            "seed": seed,
            "device": device,
            "limit_train": settings.get("limit_train"),
            "limit_test": settings.get("limit_test"),
            "data_options": {
                **data["options"],
                **dict(arm.data_options),
                **settings["arm_data_options"].get(arm.name, {}),
            },
            "model_options": dict(arm.model_options),
            "callback": callback,
        }
        if arm.init_from_arm:
            options["init_from"] = str(run_dir_of(out, arm.init_from_arm, seed))
            options["init_exclude"] = arm.init_exclude
        if arm.freeze:
            options["freeze"] = arm.freeze
        if resume:
            options = {"resume": resume, "device": device, "callback": callback, "epochs": settings["epochs"]}
        else:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            options["out"] = str(run_dir)
        train(arm.model, **options)
    return collect_run(run_dir, seed)


def collect_run(run_dir: Path, seed: int) -> dict[str, Any]:
    """The numbers of one finished run: final metrics (errors = 1 − top-1), curves, timing."""
    from cnnatlas.train.run import read_metrics

    rows = read_metrics(run_dir)
    if not rows:
        raise InputError(f"{str(run_dir)!r} holds no finished epoch")
    last = rows[-1]

    def err(value: Any) -> float | None:
        return None if value is None else 1.0 - float(value)

    train_time = sum(float(r.get("epoch_time_s") or 0.0) for r in rows)
    rates = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    record = {
        "seed": seed,
        "run_dir": str(run_dir),
        "epochs": last["epoch"],
        "steps": last["step"],
        "train_error": err(last.get("train_top1")),
        "test_error": err(last.get("test_top1")),
        "train_loss": last.get("train_loss"),
        "test_loss": last.get("test_loss"),
        "train_time_s": round(train_time, 3),
        "images_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "curve": [
            {
                "epoch": r["epoch"],
                "step": r["step"],
                "train_error": err(r.get("train_top1")),
                "test_error": err(r.get("test_top1")),
            }
            for r in rows
        ],
    }
    for key in ("val_top1",):  # the validation split, when the run held one out
        if last.get(key) is not None:
            record["val_error"] = err(last[key])
    return record


def _arm_cost(arm: Arm, settings: Mapping[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """Parameters and MACs of the arm's network at the data's image size (meta-device analysis)."""
    from cnnatlas.analysis import analyze

    options = dict(arm.model_options)
    size = None
    if run_dir is not None and (run_dir / "config.json").is_file():
        config = _read_json(run_dir / "config.json")
        options = dict(config["model"]["options"])
        adapter = config["adapter"]
        side = adapter.get("resize") or (config["data"]["image_size"][1] + 2 * adapter.get("pad", 0))
        size = (adapter["out_chans"], side, side)
    options.pop("devices", None)
    analysis = analyze(arm.model, size, **options)
    trainable = analysis.totals.get("trainable_params", analysis.totals["params"])
    return {
        "params": analysis.totals["params"],
        "macs": analysis.totals["macs"],
        "input_size": list(analysis.input_shape[1:]),
        "trainable_params": trainable,
    }


# -- the experiment --------------------------------------------------------------------------------
def run_experiment(
    name: str,
    *,
    out: str | os.PathLike[str] | None = None,
    budget: str = "quick",
    seeds: int | None = None,
    data: str | None = None,
    root: str | None = None,
    device: str = "auto",
    jobs: int = 1,
    arms: tuple[str, ...] | None = None,
    resume: str | os.PathLike[str] | None = None,
    callback: Callback | None = None,
) -> Path:
    """Train (or resume) every arm × seed of experiment ``name`` and write its results.

    Returns the output folder. ``resume`` continues a folder written before (its saved settings
    win); ``jobs`` > 1 trains that many runs at once in separate processes.
    """
    emit = callback or (lambda event, payload: None)
    if not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a positive integer, got {jobs!r}")
    if resume is not None:
        folder = Path(resume)
        if not (folder / SETTINGS_FILE).is_file():
            raise InputError(f"{str(folder)!r} holds no experiment to resume (no {SETTINGS_FILE})")
        settings = _read_json(folder / SETTINGS_FILE)
        exp = get_experiment(settings["experiment"])
    else:
        exp = get_experiment(name)
        settings = _settings(exp, budget, seeds, data, root, arms)
        folder = Path(out) if out else Path("experiments") / f"{exp.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        if (folder / SETTINGS_FILE).exists():
            raise InputError(f"{str(folder)!r} already holds an experiment; pass --resume {folder} to continue it")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / SETTINGS_FILE, settings)
    chosen = [exp.arm(a) for a in settings["arms"]]
    emit(
        "start",
        {"experiment": exp.name, "out": str(folder), "arms": [a.name for a in chosen], "seeds": settings["seeds"]},
    )
    started = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {}
    if exp.trains:
        waves = _waves(chosen)
        for wave in waves:
            pairs = [(arm, seed) for arm in wave for seed in settings["seeds"]]
            for arm, _seed, record in _run_pairs(exp, pairs, settings, folder, device, jobs, emit):
                records.setdefault(arm.name, []).append(record)
    results = _assemble(exp, chosen, settings, folder, records, device)
    results["total_wall_time_s"] = round(time.perf_counter() - started, 1)
    # not sorted: arms stay in the experiment's order, the baseline first
    atomic_write_bytes(folder / RESULTS_FILE, (json.dumps(results, indent=1) + "\n").encode())
    from cnnatlas.experiments.report import render

    render(folder)
    emit("done", {"out": str(folder)})
    return folder


def _waves(arms: list[Arm]) -> list[list[Arm]]:
    """Arms in dependency order: an arm that starts from another runs in a later wave."""
    done: set[str] = set()
    remaining = list(arms)
    waves = []
    while remaining:
        wave = [a for a in remaining if not a.init_from_arm or a.init_from_arm in done]
        waves.append(wave)
        done |= {a.name for a in wave}
        remaining = [a for a in remaining if a not in wave]
    return waves


def _run_pairs(
    exp: Experiment,
    pairs: list[tuple[Arm, int]],
    settings: Mapping[str, Any],
    folder: Path,
    device: str,
    jobs: int,
    emit: Callback,
) -> list[tuple[Arm, int, dict[str, Any]]]:
    out: list[tuple[Arm, int, dict[str, Any]]] = []
    if jobs == 1 or len(pairs) == 1:
        for arm, seed in pairs:
            emit("run", {"arm": arm.name, "seed": seed, "run_dir": str(run_dir_of(folder, arm.name, seed))})
            record = _train_one(exp, arm, seed, settings, folder, device)
            emit(
                "run_done",
                {
                    "arm": arm.name,
                    "seed": seed,
                    **{k: record[k] for k in ("test_error", "train_error", "train_time_s")},
                },
            )
            out.append((arm, seed, record))
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_limit_threads, initargs=(jobs,)
    ) as pool:
        futures = [
            (arm, seed, pool.submit(_train_one_by_name, exp.name, arm.name, seed, dict(settings), str(folder), device))
            for arm, seed in pairs
        ]
        for arm, seed, future in futures:
            record = future.result()
            emit(
                "run_done",
                {
                    "arm": arm.name,
                    "seed": seed,
                    **{k: record[k] for k in ("test_error", "train_error", "train_time_s")},
                },
            )
            out.append((arm, seed, record))
    return out


def _limit_threads(jobs: int) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))


def _train_one_by_name(
    exp_name: str, arm_name: str, seed: int, settings: dict[str, Any], out: str, device: str
) -> dict[str, Any]:
    exp = get_experiment(exp_name)
    return _train_one(exp, exp.arm(arm_name), seed, settings, Path(out), device)


def _assemble(
    exp: Experiment,
    arms: list[Arm],
    settings: Mapping[str, Any],
    folder: Path,
    records: Mapping[str, list[dict[str, Any]]],
    device: str,
) -> dict[str, Any]:
    from cnnatlas.experiments.measures import run_measures

    results: dict[str, Any] = {
        "schema": SCHEMA,
        "experiment": exp.name,
        "question": exp.question,
        "claim": exp.claim,
        "budget": settings["budget"],
        "seeds": settings["seeds"],
        "data": settings["data"],
        "epochs": settings["epochs"],
        "recipe": settings["recipe"],
        "recipe_overrides": settings["recipe_overrides"],
        "metric": exp.metric,
        "significance": stats.RULE,
        "machine": machine(),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "arms": {},
    }
    for arm in arms:
        runs = sorted(records.get(arm.name, []), key=lambda r: r["seed"])
        first = run_dir_of(folder, arm.name, runs[0]["seed"]) if runs else None
        entry: dict[str, Any] = {
            "model": arm.model,
            "model_options": _jsonable(dict(arm.model_options)),
            "description": arm.description,
            "init_from_arm": arm.init_from_arm,
            "freeze": arm.freeze,
            **_arm_cost(arm, settings, first),
            "runs": runs,
            "metrics": {},
        }
        for key in (
            "test_error",
            "train_error",
            "val_error",
            "test_loss",
            "train_loss",
            "train_time_s",
            "images_per_s",
        ):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                entry["metrics"][key] = stats.summary(values)
        results["arms"][arm.name] = entry
    extra = run_measures(exp, results, folder, device)
    results["extra"] = extra
    baseline = arms[0].name
    for arm in arms[1:]:
        a = _metric_values(results, baseline, exp.metric)
        b = _metric_values(results, arm.name, exp.metric)
        results["arms"][arm.name]["vs_baseline"] = {"baseline": baseline, "metric": exp.metric, **stats.welch(a, b)}
    return results


def _metric_values(results: Mapping[str, Any], arm: str, metric: str) -> list[float]:
    entry = results["arms"][arm]
    if metric in entry["metrics"]:
        return list(entry["metrics"][metric]["values"])
    return list(entry.get("measured", {}).get(metric, {}).get("values", []))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def read_results(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"{str(folder)!r} holds no {RESULTS_FILE}; run `cnnatlas experiment run` first")
    results = _read_json(path)
    if results.get("schema") != SCHEMA or "arms" not in results:
        raise InputError(f"{str(path)!r} is not a cnnatlas experiment result (schema {SCHEMA})")
    return results


__all__ = ["CnnAtlasError", "collect_run", "read_results", "run_experiment"]
