"""Partial weight transfer and freezing: VGG's warm start and the "features transfer" recipe.

* :func:`init_from` copies every tensor of a trained run (or a weight file) whose name *and*
  shape match into a new network and reports what it copied and what it left at its fresh
  initialisation. Simonyan & Zisserman (VGG, §3.1) initialised "the first four convolutional
  layers and the last three fully-connected layers" of the deeper nets D/E with the layers of
  the trained net A and the rest randomly; with cnnatlas's stable module names
  (``stage1.conv1`` …) copying by name and shape does exactly that.
* :func:`freeze` turns ``requires_grad`` off for the parameters whose names match fnmatch
  patterns (``stages.*``): with everything but the classifier frozen, training is a linear
  classifier on the network's features (Razavian et al. 2014; Donahue et al. 2014).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from cnnatlas.errors import CheckpointError, InputError


@dataclass
class TransferReport:
    """What :func:`init_from` did: tensor names copied, and the model's tensors it left (with why)."""

    source: str
    copied: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # name → "not in source" / "shape … vs …" / "excluded"

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "copied": list(self.copied), "left": dict(self.left)}


def read_source_state(source: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors of a run directory's newest checkpoint, or of a ``.safetensors``/``.pth`` file."""
    path = Path(source)
    if path.is_dir():
        from cnnatlas.train.checkpoint import load_latest_checkpoint

        return dict(load_latest_checkpoint(path, with_optimizer=False).model_state)
    from cnnatlas.weights import read_state_dict

    return read_state_dict(path)


def _patterns(patterns: str | Sequence[str] | None) -> list[str]:
    if not patterns:
        return []
    items = patterns.split(",") if isinstance(patterns, str) else list(patterns)
    return [p.strip() for p in items if p.strip()]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    # "stages.0" also matches everything below it, as "stages.0.*" does
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p + ".*") for p in patterns)


def init_from(
    model: nn.Module, source: str | os.PathLike[str], *, exclude: str | Sequence[str] | None = None
) -> TransferReport:
    """Copy into ``model`` every tensor of ``source`` whose name and shape match (parameters and
    buffers, e.g. batch-norm statistics), except names matching ``exclude`` patterns.

    Raises CheckpointError when nothing matches (the source is for another architecture).
    """
    state = read_source_state(source)
    skip = _patterns(exclude)
    report = TransferReport(str(source))
    own = model.state_dict()
    with torch.no_grad():
        for name, target in own.items():
            if skip and _matches(name, skip):
                report.left[name] = "excluded"
            elif name not in state:
                report.left[name] = "not in the source"
            elif tuple(state[name].shape) != tuple(target.shape):
                report.left[name] = f"shape {tuple(state[name].shape)} in the source vs {tuple(target.shape)} here"
            else:
                target.copy_(state[name].to(dtype=target.dtype, device=target.device))
                report.copied.append(name)
    if not report.copied:
        raise CheckpointError(
            f"--init-from {str(source)!r}: no tensor matches the model by name and shape "
            f"({len(state)} tensors in the source, {len(own)} in the model); is it another architecture?"
        )
    return report


def freeze(model: nn.Module, patterns: str | Sequence[str]) -> list[str]:
    """Stop gradients for parameters whose names match any fnmatch pattern; returns their names.

    A pattern that matches no parameter is an InputError naming the model's top-level modules.
    """
    wanted = _patterns(patterns)
    if not wanted:
        raise InputError("--freeze needs at least one pattern, e.g. 'stages.*'")
    names = [name for name, _ in model.named_parameters()]
    for pattern in wanted:
        if not any(_matches(name, [pattern]) for name in names):
            tops = sorted({name.split(".")[0] for name in names})
            raise InputError(f"--freeze {pattern!r} matches no parameter; top-level modules: {', '.join(tops)}")
    frozen = []
    for name, param in model.named_parameters():
        if _matches(name, wanted):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen
