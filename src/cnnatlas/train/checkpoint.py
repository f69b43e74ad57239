"""Checkpoints: safetensors for tensors, one JSON state file per checkpoint as the commit marker.

Layout inside ``RUN_DIR/checkpoints/`` for a checkpoint taken after global step ``S``::

    step-00000S.model.safetensors   the model's state dict
    step-00000S.optim.safetensors   the optimiser's tensor state, flattened ("state.3.momentum_buffer")
    step-00000S.json                everything else (epoch, step within the epoch, scheduler,
                                    RNG states, sampler position, config, optimiser hyper-parameters,
                                    SHA-256 of both tensor files) — written LAST

Every file is written atomically (temporary file in the same folder, flush, fsync, rename,
fsync of the folder), so a checkpoint exists exactly when its JSON exists, and a JSON can only
name tensor files that are already complete on disk. A run killed at any moment — even in the
middle of a save — therefore resumes from the newest JSON. Nothing on the read path unpickles:
safetensors and JSON only.

Only the newest ``keep`` committed checkpoints are kept; older ones are deleted only *after* the
new one has been committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from cnnatlas.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
FORMAT = "cnnatlas-checkpoint/1"
_NAME = re.compile(r"^step-(\d{9})\.json$")


# -- atomic file writes ----------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where the OS cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- JSON-safe encodings of tensors that must live in the state file -------------------------
def encode_bytes_tensor(state: Tensor) -> str:
    """An RNG state (uint8 tensor) as base64 text."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_bytes_tensor(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


# -- optimiser state <-> (tensors, JSON) -----------------------------------------------------
def flatten_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors and JSON (hyper-parameters, scalars)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": [dict(group) for group in state["param_groups"]], "scalars": scalars}
    return tensors, meta


def unflatten_optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        per_param.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        per_param.setdefault(int(index), {}).update(values)
    return {"state": per_param, "param_groups": [dict(g) for g in meta["param_groups"]]}


# -- save / find / load ----------------------------------------------------------------------
def _stem(step: int) -> str:
    return f"step-{step:09d}"


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    step: int,
    model_state: Mapping[str, Tensor],
    optimizer_state: Mapping[str, Any],
    state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write one checkpoint (tensor files first, the JSON last) and prune old ones; returns the JSON path."""
    from safetensors.torch import save as st_save

    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(step)
    model_bytes = st_save({k: v.detach().cpu().contiguous().clone() for k, v in model_state.items()})
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer_state)
    optim_bytes = st_save(optim_tensors)
    files = {"model": f"{stem}.model.safetensors", "optimizer": f"{stem}.optim.safetensors"}
    atomic_write_bytes(folder / files["model"], model_bytes)
    atomic_write_bytes(folder / files["optimizer"], optim_bytes)
    record = dict(state)
    record.update(
        format=FORMAT,
        global_step=step,
        files=files,
        sha256={"model": sha256_bytes(model_bytes), "optimizer": sha256_bytes(optim_bytes)},
        optimizer_meta=optim_meta,
    )
    marker = folder / f"{stem}.json"
    atomic_write_json(marker, record)  # the commit point
    _prune(folder, keep=keep)
    return marker


def _prune(folder: Path, *, keep: int) -> None:
    committed = list_checkpoints(folder.parent)
    kept_stems = {p.name[: -len(".json")] for p in committed[-keep:]}
    for marker in committed[:-keep]:
        marker.unlink(missing_ok=True)  # un-commit first, then remove its data
    for path in folder.iterdir():
        stem = path.name.split(".", 1)[0]
        if path.name.startswith(".tmp-"):
            continue  # may belong to a concurrent writer; harmless, ignored by readers
        if stem not in kept_stems:
            path.unlink(missing_ok=True)


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Committed checkpoints (their JSON files), oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


@dataclass
class Checkpoint:
    """A verified checkpoint: its JSON state and its tensors (on the CPU)."""

    path: Path
    state: dict[str, Any]
    model_state: dict[str, Tensor]
    optimizer_tensors: dict[str, Tensor]

    @property
    def optimizer_state(self) -> dict[str, Any]:
        return unflatten_optimizer_state(self.optimizer_tensors, self.state["optimizer_meta"])


def load_latest_checkpoint(run_dir: str | os.PathLike[str], *, with_optimizer: bool = True) -> Checkpoint:
    """The newest committed checkpoint of ``run_dir``, SHA-256 verified; CheckpointError otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    markers = list_checkpoints(run_dir)
    if not markers:
        raise CheckpointError(f"{str(run_dir)!r} holds no checkpoint (looked for {CHECKPOINT_DIR}/step-*.json)")
    return load_checkpoint(markers[-1], with_optimizer=with_optimizer)


def load_checkpoint(marker: str | os.PathLike[str], *, with_optimizer: bool = True) -> Checkpoint:
    from safetensors.torch import load as st_load

    marker = Path(marker)
    try:
        state = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint state {str(marker)!r} is unreadable: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(marker)!r} is not a cnnatlas checkpoint (format {FORMAT!r})")
    tensors: dict[str, dict[str, Tensor]] = {}
    for part in ("model", "optimizer") if with_optimizer else ("model",):
        try:
            path = marker.parent / state["files"][part]
            expected = state["sha256"][part]
        except (KeyError, TypeError):
            raise CheckpointError(f"checkpoint state {str(marker)!r} does not name its {part} file") from None
        try:
            data = path.read_bytes()
        except OSError:
            raise CheckpointError(f"checkpoint file {str(path)!r} is missing") from None
        if sha256_bytes(data) != expected:
            raise CheckpointError(f"checkpoint file {str(path)!r} is corrupt (SHA-256 mismatch)")
        try:
            tensors[part] = st_load(data)
        except Exception as exc:  # noqa: BLE001 - a verified hash with bad content is still corrupt
            raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read: {exc}") from None
    return Checkpoint(marker, state, tensors["model"], tensors.get("optimizer", {}))
