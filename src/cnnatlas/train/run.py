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

from cnnatlas.errors import CheckpointError
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


@dataclass
class LoadedRun:
    """A trained run ready for inference."""

    model: nn.Module
    config: dict[str, Any]
    adapter: InputAdapter
    classes: tuple[str, ...]
    checkpoint: Path
    global_step: int


def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{str(run_dir)!r} is not a cnnatlas run directory (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is unreadable: {exc}") from None
    if not isinstance(config, dict) or "model" not in config or "adapter" not in config:
        raise CheckpointError(f"{str(path)!r} is not a cnnatlas run configuration")
    return config


def build_model_from_config(config: Mapping[str, Any]) -> nn.Module:
    from cnnatlas.registry import create_model

    model_cfg = config["model"]
    return create_model(model_cfg["name"], **dict(model_cfg.get("options", {})))


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """The run's model (eval mode, CPU, newest complete checkpoint), config, adapter and classes."""
    from cnnatlas.weights import check_state_dict

    config = read_config(run_dir)
    checkpoint = load_latest_checkpoint(run_dir, with_optimizer=False)
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
    )


# -- writers (rank 0 only; the trainer decides who calls them) --------------------------------
def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    atomic_write_json(run_dir / CONFIG_FILE, config)


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a killed run; everything before it is good
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
