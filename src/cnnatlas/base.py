"""The one model interface every cnnatlas network implements.

``forward(x)`` = ``forward_head(forward_features(x))`` after :meth:`AtlasModel.check_input`,
so the trainer and the analyser never special-case an architecture. Input of the wrong rank,
channel count or size raises :class:`~cnnatlas.errors.InputError` with a sentence naming the
model, what it needs, what it got and the first layer that would collapse — never a raw
PyTorch pooling error.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.errors import InputError


class AtlasModel(nn.Module):
    """Base class: subclasses set ``in_chans``, ``num_classes``, ``min_input_size`` and implement
    ``forward_features``, ``forward_head`` and ``reset_classifier``.

    ``min_input_size`` is the smallest square side (pixels) for which every layer keeps a
    non-empty output; ``max_input_size`` is set only by networks whose fully connected layers
    fix the spatial size (e.g. LeNet-5's C5 must see 5×5 maps), else ``None``.
    """

    model_name: str = ""
    min_input_size: int = 1
    max_input_size: int | None = None

    def __init__(self, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans

    # -- the interface -------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Any:
        raise NotImplementedError

    def forward_head(self, x: Any) -> Any:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def paper_layer_names(self) -> dict[str, str]:
        """Map module paths to the paper's layer names where they differ.

        Torchvision-compatible models keep torchvision's parameter keys (``features.0``) and
        say here that ``features.0`` is ``conv1_1``, so analyser tables read like the paper.
        """
        return {}

    def forward(self, x: Tensor) -> Any:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    # -- training helpers the trainer uses for every model -------------------------------
    def training_loss(
        self, output: Any, target: Tensor, label_smoothing: float = 0.0, temperature: float = 1.0
    ) -> Tensor:
        """Cross-entropy of one forward output's logits ÷ ``temperature``; models with auxiliary
        heads override this."""
        return F.cross_entropy(
            output / temperature if temperature != 1.0 else output, target, label_smoothing=label_smoothing
        )

    def after_optimizer_step(self) -> None:
        """Called by the trainer after every optimiser step; a no-op unless the paper constrains
        the weights between steps (ZFNet §3 renormalises its filters)."""

    @staticmethod
    def main_logits(output: Any) -> Tensor:
        """The main classifier's logits out of whatever ``forward`` returned."""
        return output if isinstance(output, Tensor) else output[0]

    # -- input validation ----------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.model_name or type(self).__name__

    def check_input(self, x: Tensor) -> None:
        """Raise InputError unless ``x`` is N×C×H×W with the right C and a workable H, W.

        Under ``torch.fx.symbolic_trace`` (and so ``create_feature_extractor``) ``x`` is a
        ``torch.fx.Proxy`` whose shape is unknown until the traced graph runs: nothing can be
        checked, and the graph records no check. ``torch.export`` and ``torch.compile`` trace
        with fake tensors of known shape, so the checks run (and raise) there as in eager mode.
        """
        if getattr(self, "_probing", False) or isinstance(x, torch.fx.Proxy):
            return
        name = self.display_name
        if not isinstance(x, Tensor):
            raise InputError(f"{name} needs a tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InputError(
                f"{name} needs a 4-D batch N×{self.in_chans}×H×W, got a {x.dim()}-D tensor of shape "
                f"{tuple(x.shape)} (add a batch dimension with x.unsqueeze(0))"
            )
        _, chans, height, width = x.shape
        if chans != self.in_chans:
            raise InputError(
                f"{name} needs {self.in_chans}-channel input, got {chans} channels "
                f"(shape {tuple(x.shape)}); build it with in_chans={chans} or convert the images"
            )
        low, high = self.min_input_size, self.max_input_size
        if min(height, width) < low or (high is not None and max(height, width) > high):
            need = (
                f"{low}×{low}"
                if high == low
                else (f"between {low}×{low} and {high}×{high}" if high is not None else f"at least {low}×{low}")
            )
            where = find_collapsing_layer(self, tuple(x.shape))
            raise InputError(
                f"{name} needs input {need} pixels, got {height}×{width}" + (f": {where}" if where else "")
            )


def find_collapsing_layer(model: nn.Module, shape: Sequence[int]) -> str:
    """Name the first layer that fails (or yields an empty map) for an input of ``shape``;
    "" when the whole network runs.

    Runs the model on the meta device through ``torch.func.functional_call`` with meta
    stand-ins for every parameter and buffer, so nothing is computed or allocated.
    """
    meta_state = {
        k: torch.empty_like(v, device="meta") for k, v in list(model.named_parameters()) + list(model.named_buffers())
    }
    culprit: list[str] = []
    last_entered: list[str] = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            seen = args[0] if args and isinstance(args[0], Tensor) else None
            size = "×".join(map(str, seen.shape[1:])) if seen is not None else "?"
            last_entered[:] = [f"layer {name} ({type(module).__name__}) would collapse: it receives a {size} map"]

        return hook

    def post_hook(name: str):
        def hook(_module: nn.Module, _args: Any, out: Any) -> None:
            if not culprit and isinstance(out, Tensor) and out.dim() == 4 and min(out.shape[2:]) < 1:
                shape = "×".join(map(str, out.shape[1:]))
                culprit.append(f"layer {name} ({type(_module).__name__}) would produce an empty {shape} output")

        return hook

    handles = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook(name)))
    model._probing = True  # type: ignore[attr-defined]
    try:
        torch.func.functional_call(model, meta_state, (torch.empty(*shape, device="meta"),))
    except Exception as exc:  # noqa: BLE001 - any failure here is the collapse we are naming
        if not culprit:
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            culprit.append(last_entered[0] if last_entered else f"the network fails ({reason})")
    finally:
        model._probing = False  # type: ignore[attr-defined]
        for h in handles:
            h.remove()
    return culprit[0] if culprit else ""


def smallest_working_input(model: nn.Module, in_chans: int, upper: int | None = None) -> int | None:
    """Smallest square side for which a meta-device forward succeeds with non-empty maps.

    Used by tests (to hold each model's declared ``min_input_size`` against the truth) and by
    the analyser's "smallest input that works" hint. Assumes that once a size works every
    larger one up to ``upper`` does, which holds for stacks of convolutions and pools.
    """
    upper = upper or getattr(model, "max_input_size", None) or 1024

    def works(side: int) -> bool:
        return find_collapsing_layer(model, (1, in_chans, side, side)) == ""

    if not works(upper):
        return None
    low, high = 1, upper
    while low < high:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid + 1
    return low
