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
import binascii
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from cnnatlas.errors import CheckpointError
from cnnatlas.safeio import TMP_PREFIX, atomic_write_bytes, atomic_writer, fsync_dir, read_regular_file
from cnnatlas.schema import OBJECT, Rule, check_fields, int_rule, str_rule

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "fsync_dir",
    "save_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "clean_stale_temporaries",
]

CHECKPOINT_DIR = "checkpoints"
FORMAT = "cnnatlas-checkpoint/2"
_NAME = re.compile(r"^step-(\d{9})\.json$")
#: The files one checkpoint consists of, by part; nothing else in ``checkpoints/`` is ever touched.
_TENSOR_SUFFIX = {"model": ".model.safetensors", "optimizer": ".optim.safetensors"}
_OWN_FILE = re.compile(r"^step-(\d{9})\.(json|model\.safetensors|optim\.safetensors)$")
#: Temporary files of interrupted writes of the run's own files (see :func:`clean_stale_temporaries`).
_OWN_TMP = re.compile(
    r"^\.tmp-(step-\d{9}\.(json|model\.safetensors|optim\.safetensors)"
    r"|config\.json|metrics\.jsonl|metrics\.csv|curves\.png|diagnostic\.json)\.[0-9a-f]{8}$"
)

#: Size limits checked (from ``fstat``) before a byte is read. A state file holds the run's
#: configuration and the optimiser's hyper-parameters: kilobytes, megabytes for 100k classes.
MAX_STATE_BYTES = 64 * 2**20
#: A tensor file must have exactly the size its state file records, and at most this many bytes
#: (a 4-billion-parameter model with two optimiser buffers in float32 is 48 GiB).
MAX_TENSOR_FILE_BYTES = 64 * 2**30
#: An RNG state in a checkpoint: the CPU Mersenne Twister state is 5,056 bytes, CUDA's 16.
_MAX_RNG_STATE_BYTES = 1 << 16


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _state_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of a state record's canonical JSON without its own ``state_sha256`` field."""
    body = {k: v for k, v in record.items() if k != "state_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


# -- JSON-safe encodings of tensors that must live in the state file -------------------------
def encode_bytes_tensor(state: Tensor) -> str:
    """An RNG state (uint8 tensor) as base64 text."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_bytes_tensor(text: Any, *, what: str = "RNG state") -> Tensor:
    """The uint8 tensor of :func:`encode_bytes_tensor`; CheckpointError for anything else."""
    if not isinstance(text, str) or len(text) > _MAX_RNG_STATE_BYTES * 4 // 3 + 4:
        raise CheckpointError(f"checkpoint {what} is not a base64 string of at most {_MAX_RNG_STATE_BYTES} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"checkpoint {what} is not valid base64") from None
    if not raw:
        raise CheckpointError(f"checkpoint {what} is empty")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


# -- optimiser state <-> (tensors, JSON) -----------------------------------------------------
def flatten_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors and JSON (hyper-parameters, scalars).

    The tensors are the optimiser's own (no copies): the writer streams them one at a time."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{key}"] = value.detach()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": [dict(group) for group in state["param_groups"]], "scalars": scalars}
    return tensors, meta


_OPTIM_TENSOR_NAME = re.compile(r"^state\.(\d{1,9})\.([A-Za-z_][A-Za-z0-9_]{0,63})$")


def unflatten_optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        match = _OPTIM_TENSOR_NAME.match(name)
        if match is None:
            raise CheckpointError(f"optimiser tensor name {name[:60]!r} is not of the form state.<index>.<name>")
        per_param.setdefault(int(match[1]), {})[match[2]] = value
    for index, values in meta.get("scalars", {}).items():
        per_param.setdefault(int(index), {}).update(values)
    return {"state": per_param, "param_groups": [dict(g) for g in meta["param_groups"]]}


# -- streaming safetensors writer ------------------------------------------------------------
#: safetensors dtype names (https://github.com/huggingface/safetensors, format description).
_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(path: Path, tensors: Mapping[str, Tensor]) -> tuple[str, int]:
    """Write ``tensors`` as a safetensors file, one tensor at a time; ``(sha256, size)`` of the file.

    The header (8-byte little-endian length, then JSON with dtype, shape and byte offsets of
    each tensor) needs only shapes and dtypes, so the data is streamed tensor by tensor: the
    extra memory is one tensor's CPU copy at most, never the whole model serialised at once.
    """
    header: dict[str, Any] = {}
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"cannot save tensor {name!r} of dtype {tensor.dtype}")
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    digest = hashlib.sha256()
    with atomic_writer(path) as handle:
        for chunk in (struct.pack("<Q", len(text)), text):
            handle.write(chunk)
            digest.update(chunk)
        for tensor in tensors.values():
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            if flat.numel():
                view = memoryview(flat.view(torch.uint8).numpy())  # little-endian, as the format wants
                handle.write(view)
                digest.update(view)
    return digest.hexdigest(), 8 + len(text) + offset


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
    folder = Path(run_dir) / CHECKPOINT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from cnnatlas.safeio import describe_write_error

        raise CheckpointError(describe_write_error(folder, exc)) from None
    stem = _stem(step)
    files = {part: stem + suffix for part, suffix in _TENSOR_SUFFIX.items()}
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer_state)
    model_sha, model_size = write_safetensors(folder / files["model"], model_state)
    optim_sha, optim_size = write_safetensors(folder / files["optimizer"], optim_tensors)
    record = dict(state)
    record.update(
        format=FORMAT,
        global_step=step,
        files=files,
        sha256={"model": model_sha, "optimizer": optim_sha},
        bytes={"model": model_size, "optimizer": optim_size},
        optimizer_meta=optim_meta,
    )
    record["state_sha256"] = _state_digest(record)
    marker = folder / f"{stem}.json"
    atomic_write_json(marker, record)  # the commit point
    _prune(folder, keep=keep)
    return marker


def _own_files(folder: Path) -> list[tuple[str, Path]]:
    """``(stem, path)`` of the regular files in ``folder`` whose names a checkpoint save writes."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _OWN_FILE.match(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append((f"step-{match[1]}", Path(entry.path)))
    return found


def _prune(folder: Path, *, keep: int) -> None:
    """Delete the checkpoints older than the newest ``keep``: only files named exactly as a save
    names them (``step-NNNNNNNNN.json`` / ``.model.safetensors`` / ``.optim.safetensors``), JSON first."""
    committed = list_checkpoints(folder.parent)
    kept_stems = {p.name[: -len(".json")] for p in committed[-keep:]}
    for marker in committed[:-keep]:
        marker.unlink(missing_ok=True)  # un-commit first, then remove its data
    newest = max(kept_stems) if kept_stems else None
    for stem, path in _own_files(folder):
        # tensor files of an older step that never got (or lost) its JSON are a killed save's leftovers
        if stem not in kept_stems and (newest is None or stem < newest):
            path.unlink(missing_ok=True)


def clean_stale_temporaries(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that writes killed mid-way left in ``run_dir`` and its
    ``checkpoints/`` (only ``.tmp-<one of the run's own file names>.<8 hex digits>``); call it
    while holding the run's lock, so no live writer owns them. Returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINT_DIR):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if (
                entry.name.startswith(TMP_PREFIX)
                and _OWN_TMP.match(entry.name)
                and entry.is_file(follow_symlinks=False)
            ):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Committed checkpoints (their JSON files), oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    # Not only regular files: a FIFO or link under a checkpoint's name is reported by the reader
    # (and skipped for an older checkpoint) rather than silently ignored.
    return sorted(Path(e.path) for e in entries if _NAME.match(e.name) and not e.is_dir(follow_symlinks=False))


@dataclass
class Checkpoint:
    """A verified checkpoint: its JSON state and its tensors (on the CPU).

    ``skipped`` lists newer checkpoints that were passed over, each as one sentence saying
    which and why (the caller decides whether to tell the user)."""

    path: Path
    state: dict[str, Any]
    model_state: dict[str, Tensor]
    optimizer_tensors: dict[str, Tensor]
    skipped: list[str] = field(default_factory=list)

    @property
    def optimizer_state(self) -> dict[str, Any]:
        return unflatten_optimizer_state(self.optimizer_tensors, self.state["optimizer_meta"])


def load_latest_checkpoint(run_dir: str | os.PathLike[str], *, with_optimizer: bool = True) -> Checkpoint:
    """The newest complete checkpoint of ``run_dir``.

    A checkpoint that fails any check (unreadable or tampered state, missing, altered or
    oversized tensor file) is skipped for the one before it, which ``keep=2`` retains; the
    result's ``skipped`` says which were skipped and why. CheckpointError when none is usable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    markers = list_checkpoints(run_dir)
    if not markers:
        raise CheckpointError(f"{str(run_dir)!r} holds no checkpoint (looked for {CHECKPOINT_DIR}/step-*.json)")
    skipped: list[str] = []
    first_error: CheckpointError | None = None
    for marker in reversed(markers):
        try:
            checkpoint = load_checkpoint(marker, with_optimizer=with_optimizer)
        except CheckpointError as exc:
            first_error = first_error or exc
            skipped.append(f"skipped checkpoint {marker.name}: {exc}")
            continue
        checkpoint.skipped = skipped
        return checkpoint
    assert first_error is not None
    if len(markers) == 1:
        raise first_error
    raise CheckpointError(
        f"none of the {len(markers)} checkpoints in {str(run_dir)!r} is usable; newest: {first_error}"
    )


def _state_rules(stem: str) -> dict[str, Rule]:
    sha = Rule(lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a SHA-256 hex digest")
    size = int_rule(8, MAX_TENSOR_FILE_BYTES)
    return {
        "global_step": int_rule(0, 10**12),
        "model_name": str_rule(200),
        "files": Rule(
            lambda v: isinstance(v, dict) and all(v.get(p) == stem + s for p, s in _TENSOR_SUFFIX.items()),
            f"{{model: {stem}.model.safetensors, optimizer: {stem}.optim.safetensors}} (plain names in the folder)",
        ),
        "sha256": Rule(
            lambda v: isinstance(v, dict) and all(sha.accepts(v.get(p)) for p in _TENSOR_SUFFIX),
            "SHA-256 digests of both files",
        ),
        "bytes": Rule(
            lambda v: isinstance(v, dict) and all(size.accepts(v.get(p)) for p in _TENSOR_SUFFIX),
            "the sizes of both files",
        ),
        "optimizer_meta": OBJECT,
    }


def _check_optimizer_meta(meta: dict[str, Any], source: str) -> None:
    groups = meta.get("param_groups")
    if not isinstance(groups, list) or not groups or len(groups) > 10_000:
        raise CheckpointError(f"{source}: optimizer_meta.param_groups must be a non-empty list")
    for group in groups:
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in params
        ):
            raise CheckpointError(f"{source}: every optimiser parameter group needs a list of parameter indices")
        if not all(isinstance(k, str) for k in group):
            raise CheckpointError(f"{source}: optimiser parameter group keys must be strings")
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict) or not all(
        isinstance(k, str) and k.isdigit() and isinstance(v, dict) for k, v in scalars.items()
    ):
        raise CheckpointError(f"{source}: optimizer_meta.scalars must map parameter indices to objects")


def load_checkpoint(marker: str | os.PathLike[str], *, with_optimizer: bool = True) -> Checkpoint:
    """One checkpoint: its state file checked (size, integrity hash, schema), then each tensor
    file (a regular file of the folder, exactly the recorded size and SHA-256); CheckpointError otherwise."""
    from safetensors.torch import load as st_load

    marker = Path(marker)
    source = f"checkpoint state {str(marker)!r}"
    data = read_regular_file(
        marker, what="checkpoint state", max_bytes=MAX_STATE_BYTES, follow_symlinks=False, error=CheckpointError
    )
    try:
        state = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{source} is unreadable: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        older = (
            " (written by another cnnatlas version)"
            if isinstance(found, str) and found.startswith("cnnatlas-checkpoint/")
            else ""
        )
        raise CheckpointError(f"{str(marker)!r} is not a cnnatlas checkpoint (format {FORMAT!r}){older}")
    if state.get("state_sha256") != _state_digest(state):
        raise CheckpointError(f"{source} is corrupt or was edited (its integrity hash does not match)")
    match = _NAME.match(marker.name)
    stem = marker.name[: -len(".json")]
    check_fields(state, _state_rules(stem), source=source, error=CheckpointError)
    if match is None or int(match[1]) != state["global_step"]:
        raise CheckpointError(f"{source} records step {state['global_step']}, not the step in its name")
    if with_optimizer:
        _check_optimizer_meta(state["optimizer_meta"], source)
    tensors: dict[str, dict[str, Tensor]] = {}
    for part in ("model", "optimizer") if with_optimizer else ("model",):
        path = marker.parent / state["files"][part]
        expected_size = state["bytes"][part]
        raw = read_regular_file(
            path, what="checkpoint file", max_bytes=expected_size, follow_symlinks=False, error=CheckpointError
        )
        if len(raw) != expected_size:
            raise CheckpointError(f"checkpoint file {str(path)!r} is truncated ({len(raw)} of {expected_size} bytes)")
        if sha256_bytes(raw) != state["sha256"][part]:
            raise CheckpointError(f"checkpoint file {str(path)!r} is corrupt (SHA-256 mismatch)")
        try:
            tensors[part] = st_load(raw)
        except Exception as exc:  # noqa: BLE001 - a verified hash with bad content is still corrupt
            raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read: {exc}") from None
    return Checkpoint(marker, state, tensors["model"], tensors.get("optimizer", {}))
