"""Weight import/export: torchvision ``.pth`` files and ``.safetensors``.

``.pth`` files are read with ``torch.load(weights_only=True)``: tensors and plain containers
only, never arbitrary pickled objects. Any mismatch with the model is reported in one
``CheckpointError`` listing missing keys, unexpected keys and shape mismatches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from cnnatlas.errors import CheckpointError

_MAX_LISTED = 8


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.pt`` (weights only) or ``.safetensors`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader failure means an unusable file
        raise CheckpointError(f"cannot read weights from {str(path)!r}: {_first_line(exc)}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # common wrapper of training checkpoints
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict of tensors")
    return dict(state)


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str = "state dict") -> None:
    """Raise one CheckpointError listing every key/shape mismatch between ``state`` and ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    # a tensor of another dtype would be cast silently by load_state_dict (int8 or bool into float32)
    dtypes = sorted(
        f"{k}: file {state[k].dtype} vs model {own[k].dtype}"
        for k in set(own) & set(state)
        if isinstance(state[k], Tensor) and state[k].dtype != own[k].dtype
    )
    problems = [
        f"{len(items)} {label} ({_listing(items)})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
            ("dtype mismatches", dtypes),
        )
        if items
    ]
    if problems:
        name = getattr(model, "model_name", "") or type(model).__name__
        raise CheckpointError(f"{source} does not fit {name}: " + "; ".join(problems))


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a torchvision ``.pth`` or a ``.safetensors`` file into ``model`` (strict) and return it."""
    state = read_state_dict(path)
    check_state_dict(model, state, source=repr(str(path)))
    model.load_state_dict(state, strict=True)
    return model


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model``'s state dict as safetensors (shared storage is cloned apart)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
