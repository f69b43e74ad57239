"""From data-set images to model-ready input: the one visible, logged adaptation rule.

Every model sees its data through an :class:`InputAdapter`, built once per run by
:meth:`InputAdapter.for_model` and stored in the run's ``config.json`` so that evaluation and
prediction feed the network exactly what training fed it. In order it

1. converts uint8 pixels to float in [0, 1] (augmentations already return floats),
2. zero-pads to a fixed-size network's input side — LeCun et al. 1998 §II.B: "the input is a
   32x32 pixel image ... significantly larger than the largest character in the database (at
   most 20x20 pixels centred in a 28x28 field)"; padding (not resizing) keeps the digits at
   their original scale, as the paper did,
3. resizes (bilinear, antialiased) when the network needs a larger input than the data has,
4. repeats a single grey channel to the network's channel count (used when a model was built
   for RGB, e.g. to reuse ImageNet weights; the trainer itself builds the model with the data
   set's channel count, so usually this is a no-op),
5. normalises with the *training split's* per-channel mean/std.

Padding happens before normalisation, so the padded border gets the value of a black
background pixel, exactly like the rest of the MNIST background.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnatlas.errors import InputError


@dataclass(frozen=True)
class InputAdapter:
    """Callable: an N×C×H×W uint8 or [0, 1] float batch → the normalised model input.

    ``pad``: zero pixels added on every side; ``resize``: square side to resize to (``None`` for
    no resize); ``out_chans``: channel count the model expects (grey → RGB by repetition);
    ``mean``/``std``: per input channel of the data set, in [0, 1] units; ``rule``: the
    sentence the trainer logs and ``config.json`` records.
    """

    in_chans: int
    out_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    resize: int | None = None
    rule: str = "identity"

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise InputError(
                f"input adapter: mean/std need {self.in_chans} values, got {len(self.mean)}/{len(self.std)}"
            )
        if self.out_chans != self.in_chans and self.in_chans != 1:
            raise InputError(
                f"input adapter: cannot turn {self.in_chans}-channel images into {self.out_chans} channels"
            )
        if any(s <= 0 for s in self.std):
            raise InputError(f"input adapter: std must be positive, got {self.std}")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def for_model(cls, model: Any, dataset: Any, *, image_size: int | None = None) -> "InputAdapter":
        """The rule for feeding ``dataset`` to ``model``.

        ``image_size`` is the side of the images the pipeline produces (after augmentation or
        the folder transform); by default the data set's own height.
        """
        images = getattr(dataset, "images", None)
        if images is not None:
            in_chans, height, width = (int(v) for v in images.shape[1:])
        else:  # image folders: RGB at the side the per-sample transform produces
            in_chans, height, width = 3, int(image_size or 224), int(image_size or 224)
        if image_size is not None:
            height = width = int(image_size)
        side = min(height, width)
        low = int(getattr(model, "min_input_size", 1) or 1)
        high = getattr(model, "max_input_size", None)
        out_chans = int(getattr(model, "in_chans", in_chans))
        pad, resize, steps = 0, None, []
        if high is not None and high == low and side < low and height == width:
            # A fixed-size network (LeNet-5: 32×32) shown smaller images: pad, as the paper did.
            pad = (low - side) // 2
            if side + 2 * pad != low:
                resize = low
            steps.append(f"zero-pad {side}×{side} → {side + 2 * pad}×{side + 2 * pad} (as LeNet-5 padded MNIST)")
        elif side < low:
            resize = low
            steps.append(f"resize {height}×{width} → {low}×{low} (the network's minimum input)")
        elif high is not None and max(height, width) > high:
            resize = int(high)
            steps.append(f"resize {height}×{width} → {high}×{high} (the network's maximum input)")
        if out_chans != in_chans:
            if in_chans != 1:
                raise InputError(
                    f"{getattr(model, 'display_name', 'the model')} needs {out_chans}-channel input but the data "
                    f"has {in_chans} channels; build the model with in_chans={in_chans}"
                )
            steps.append(f"grey → {out_chans} channels by repetition")
        mean = tuple(float(v) for v in _per_channel(getattr(dataset, "mean", None), in_chans, 0.5))
        std = tuple(float(v) for v in _per_channel(getattr(dataset, "std", None), in_chans, 0.5))
        steps.append("normalise with the training split's mean/std " + _fmt(mean, std))
        return cls(
            in_chans=in_chans,
            out_chans=out_chans,
            mean=mean,
            std=std,
            pad=pad,
            resize=resize,
            rule="; ".join(steps),
        )

    # -- use -------------------------------------------------------------------------------
    def __call__(self, batch: Tensor) -> Tensor:
        if batch.dim() != 4:
            raise InputError(f"input adapter needs an N×C×H×W batch, got shape {tuple(batch.shape)}")
        if batch.shape[1] != self.in_chans:
            raise InputError(f"input adapter expects {self.in_chans}-channel images, got {batch.shape[1]} channels")
        x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if self.out_chans != self.in_chans:
            x = x.expand(-1, self.out_chans, -1, -1)
        return x.contiguous()

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "InputAdapter":
        try:
            return cls(
                in_chans=int(data["in_chans"]),
                out_chans=int(data["out_chans"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                pad=int(data.get("pad", 0)),
                resize=None if data.get("resize") is None else int(data["resize"]),
                rule=str(data.get("rule", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed input adapter description: {exc}") from None


def _per_channel(values: Any, chans: int, default: float) -> list[float]:
    if values is None:
        return [default] * chans
    values = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    return values * chans if len(values) == 1 and chans > 1 else values


def _fmt(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{m:.4f}±{s:.4f}" for m, s in zip(mean, std)) + ")"
