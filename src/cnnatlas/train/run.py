"""Run directories: what a training run leaves behind, and how to load it back.

``RUN_DIR/``::

    config.json     everything resolved: model name and options, data, recipe fields, input
                    adapter, seed, device, library versions
    metrics.jsonl   one JSON object per epoch: train, validation and (last epoch only) test
                    loss and top-1, lr, time; what the losses measure is config.json's "metrics"
    metrics.csv     the same rows as CSV
    curves.png      loss and top-1 error curves (cnnatlas.plot.curves), drawn at the end
    checkpoints/    see :mod:`cnnatlas.train.checkpoint`
    diagnostic.json only after a non-finite loss stopped the run

:func:`load_run` gives evaluation and prediction the trained model in eval mode on the CPU
with the weights of the newest complete checkpoint, the config and the input adapter.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from cnnatlas.errors import CheckpointError, CnnAtlasError
from cnnatlas.limits import MAX_IMAGE_SIDE, MAX_IN_CHANS, MAX_NUM_CLASSES
from cnnatlas.safeio import read_regular_file
from cnnatlas.schema import BOOL, MAX_COUNT, OBJECT, Rule, check_fields, int_rule, list_rule, str_rule
from cnnatlas.train.adapt import InputAdapter
from cnnatlas.train.checkpoint import atomic_write_bytes, atomic_write_json, load_latest_checkpoint

CONFIG_FILE = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
DIAGNOSTIC_FILE = "diagnostic.json"
METRIC_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_top1",
    "train_objective",
    "val_loss",
    "val_top1",
    "val_top5",
    "test_loss",
    "test_top1",
    "test_top5",
    "epoch_time_s",
    "images_per_s",
)
#: Size limits checked before reading: a config.json holds names and numbers (kilobytes; a
#: megabyte with 100k class names); metrics.jsonl one short row per epoch.
MAX_CONFIG_BYTES = 16 * 2**20
MAX_METRICS_BYTES = 64 * 2**20

SEED_RULE = int_rule(-(2**63), 2**63 - 1)
_OPT_INT = int_rule(1, MAX_COUNT).or_none()
#: The schema of config.json: every field a reader uses, with its type and range.
CONFIG_RULES: dict[str, Rule] = {
    "model": OBJECT,
    "data": OBJECT,
    "recipe": OBJECT.maybe_missing(),  # needed to resume training, not to evaluate
    "adapter": OBJECT,
    "seed": SEED_RULE.maybe_missing(),
    "world_size": int_rule(1, 1 << 16).maybe_missing(),
    "amp": BOOL.maybe_missing(),
    "channels_last": BOOL.maybe_missing(),
    "compile": BOOL.maybe_missing(),
    "deterministic": BOOL.maybe_missing(),
    "checkpoint_every_steps": _OPT_INT.maybe_missing(),
    "checkpoint_every_minutes": Rule(
        lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 10**6),
        "a number of minutes ≥ 0 or null",
        optional=True,
    ),
    "limit_train": _OPT_INT.maybe_missing(),
    "limit_test": _OPT_INT.maybe_missing(),
}
MODEL_RULES: dict[str, Rule] = {"name": str_rule(200), "options": OBJECT.maybe_missing()}
DATA_RULES: dict[str, Rule] = {
    "name": str_rule(200),
    "root": str_rule(4096).or_none().maybe_missing(),
    "options": OBJECT.maybe_missing(),
    "classes": list_rule(str_rule(1000), MAX_NUM_CLASSES).maybe_missing(),
    "image_size": Rule(
        lambda v: (
            v is None
            or (
                isinstance(v, list)
                and len(v) == 3
                and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
                and 1 <= v[0] <= MAX_IN_CHANS
                and all(1 <= d <= MAX_IMAGE_SIDE for d in v[1:])
            )
        ),
        f"[C, H, W] with C ≤ {MAX_IN_CHANS} and H, W ≤ {MAX_IMAGE_SIDE}, or null",
        optional=True,
    ),
}


@dataclass
class LoadedRun:
    """A trained run ready for inference."""

    model: nn.Module
    config: dict[str, Any]
    adapter: InputAdapter
    classes: tuple[str, ...]
    checkpoint: Path
    global_step: int
    skipped: tuple[str, ...] = ()  # newer checkpoints passed over, each with the reason


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's config.json, size-limited, schema-checked (types, ranges, sizes); CheckpointError otherwise."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{str(run_dir)!r} is not a cnnatlas run directory (no {CONFIG_FILE})")
    data = read_regular_file(
        path, what="run configuration", max_bytes=MAX_CONFIG_BYTES, follow_symlinks=False, error=CheckpointError
    )
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{str(path)!r} is unreadable: {exc}") from None
    source = repr(str(path))
    check_fields(config, CONFIG_RULES, source=source, error=CheckpointError)
    check_fields(config["model"], MODEL_RULES, source=source, error=CheckpointError, where="model")
    check_fields(config["data"], DATA_RULES, source=source, error=CheckpointError, where="data")
    try:
        from cnnatlas.train.recipes import Recipe

        if "recipe" in config:
            Recipe.from_dict(config["recipe"])
        InputAdapter.from_dict(config["adapter"])
    except CnnAtlasError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return config


def build_model_from_config(config: Mapping[str, Any]) -> nn.Module:
    from cnnatlas.registry import create_model

    model_cfg = config["model"]
    return create_model(model_cfg["name"], **dict(model_cfg.get("options", {})))


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """The run's model (eval mode, CPU, newest complete checkpoint), config, adapter and classes."""
    from cnnatlas.weights import check_state_dict

    config = read_config(run_dir)
    checkpoint = load_latest_checkpoint(run_dir, with_optimizer=False)  # falls back past broken ones
    saved_for = checkpoint.state.get("model_name")
    if saved_for != config["model"]["name"]:
        raise CheckpointError(
            f"checkpoint {str(checkpoint.path)!r} is for {saved_for!r}, but the run is {config['model']['name']!r}"
        )
    model = build_model_from_config(config)
    check_state_dict(model, checkpoint.model_state, source=f"checkpoint {str(checkpoint.path)!r}")
    model.load_state_dict(checkpoint.model_state, strict=True)
    model.eval()
    return LoadedRun(
        model=model,
        config=config,
        adapter=InputAdapter.from_dict(config["adapter"]),
        classes=tuple(config.get("data", {}).get("classes", ())),
        checkpoint=checkpoint.path,
        global_step=int(checkpoint.state.get("global_step", 0)),
        skipped=tuple(checkpoint.skipped),
    )


# -- writers (rank 0 only; the trainer decides who calls them) --------------------------------
def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    atomic_write_json(run_dir / CONFIG_FILE, config)


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_JSONL
    if not path.exists():
        return []
    data = read_regular_file(
        path, what="metrics file", max_bytes=MAX_METRICS_BYTES, follow_symlinks=False, error=CheckpointError
    )
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a killed run; everything before it is good
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                break
            rows.append(row)
    return rows


def write_metrics(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv whole (atomically), so a resumed run never shows
    rows of epochs it is about to redo."""
    atomic_write_bytes(run_dir / METRICS_JSONL, "".join(json.dumps(dict(r)) + "\n" for r in rows).encode())
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in METRIC_FIELDS})
    atomic_write_bytes(run_dir / METRICS_CSV, buffer.getvalue().encode())


def draw_curves(run_dir: Path, rows: Sequence[Mapping[str, Any]], title: str = "") -> Path | None:
    """Loss and top-1 error per epoch as curves.png: training thin, validation medium, the test
    result (last epoch only) bold (:func:`cnnatlas.plot.curves`, the same drawing
    `cnnatlas plot curves` overlays for several runs)."""
    if not rows:
        return None
    from cnnatlas.plot.curves import RunCurves, curves
    from cnnatlas.plot.output import save_figure

    figure = curves([RunCurves("run", tuple(rows))], metric=("loss", "error"), title=title or None)
    return save_figure(figure, run_dir / CURVES_PNG)
