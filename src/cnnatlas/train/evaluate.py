"""Evaluation with the papers' test-time protocols, ensembles, and prediction.

``evaluate(model, dataset, adapter=…)`` returns ``{"top1", "top5", "loss", "n"}`` — fractions,
not percent (docs/evaluation.md). The trainer calls it with ``tta="none"`` on the validation
split after every epoch and on the test split once, after the last.

Test-time protocols (``tta``); every view is taken from the *model-ready* batch (after the
run's :class:`~cnnatlas.train.adapt.InputAdapter`), so they need no knowledge of how the
adapter pads, resizes or normalises — cropping and flipping commute with per-channel
normalisation. ``S`` is the side of that batch.

``none``
    One view. When ``S`` exceeds the side the paper fed the network (e.g. image folders
    decoded at 256 for a 224 network) the centre crop at the paper's side, else the image.
``flip``
    The image and its mirror, softmax averaged (VGG §3.2; Krizhevsky et al. 2012 §4.1).
``10crop``
    Krizhevsky et al. 2012 §4.1: "the network makes a prediction by extracting five 224×224
    patches (the four corner patches and the center patch) as well as their horizontal
    reflections (hence ten patches in all), and averaging the predictions made by the
    network's softmax layer on the ten patches". The crop side is the paper's input side
    when ``S`` exceeds it, else ``7·S/8`` (28 of 32 for CIFAR, 28 of 32 for padded MNIST) —
    our choice for small images, where no paper prescribes one. A network that cannot take
    the smaller crop (LeNet-5's fully connected C5 needs exactly 32×32) gets each crop
    resized back to ``S``.
``multiscale``
    VGG §3.2/§4.2: the whole image at several scales Q = {S−32, S, S+32} (for S = 256), each
    with its mirror, softmax averaged. For other sides the scales are {7S/8, S, 9S/8}, which
    is VGG's set at S = 256. VGG evaluated densely (fully connected layers as convolutions,
    class scores averaged over positions); our networks instead take the larger image
    through their adaptive/global pooling — the form torchvision's VGG/ResNet support. Only
    networks without a fixed input size (``max_input_size is None``) can do this; others
    raise :class:`~cnnatlas.errors.InputError`.

The loss of every protocol is the negative log-likelihood of the *averaged* probabilities
(for ``none`` this is the ordinary cross-entropy). Top-k uses ``k = min(5, num_classes)``:
with fewer than five classes "top-5" is top-``num_classes`` and therefore 1.0.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.errors import DataError, InputError

TTA_PROTOCOLS = ("none", "flip", "10crop", "multiscale")
TOPK = 5

Adapter = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class EnsembleMember:
    """One network and the adapter that makes data-resolution batches ready for it."""

    model: nn.Module
    adapter: Adapter


# -- public API --------------------------------------------------------------------------------
def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    adapter: Adapter,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    crop_size: int | None = None,
    folder_size: int | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Top-1, top-5 (fractions), mean loss and sample count of ``model`` on ``dataset``.

    ``dataset`` is an ``ArrayDataset`` (sliced in batches straight from its uint8 tensor, no
    per-sample Python) or a ``FolderDataset`` (read through a DataLoader with workers).
    ``crop_size`` is the side the network was trained on when the evaluation images are
    larger (default: the paper's input side, e.g. 224); ``folder_size`` the side image
    folders are decoded at when the data set has no transform of its own (default
    ``8/7 · crop``, i.e. 256 for 224). The model is put in eval mode and left there.
    """
    return ensemble_evaluate(
        [EnsembleMember(model, adapter)],
        dataset,
        tta=tta,
        batch_size=batch_size,
        device=device,
        crop_size=crop_size,
        folder_size=folder_size,
        num_workers=num_workers,
    )


def ensemble_evaluate(
    runs: Sequence[Any],
    dataset: Any,
    *,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    crop_size: int | None = None,
    folder_size: int | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate the average of several networks' softmax outputs, as the papers' ensembles
    did (Krizhevsky et al. 2012 §6, VGG §4.4, GoogLeNet §7, ResNet §3.4).

    ``runs`` holds ``EnsembleMember``s, ``LoadedRun``s (anything with ``.model`` and
    ``.adapter``) or ``(model, adapter)`` pairs. Each member uses its own adapter on the same
    data batch; the test-time protocol applies to every member. Other arguments as
    :func:`evaluate`.
    """
    members = [_as_member(r) for r in runs]
    if not members:
        raise InputError("an ensemble needs at least one run")
    _check_tta(tta)
    if batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size}")
    device = torch.device(device)
    num_classes = _num_classes(members)
    k = min(TOPK, num_classes)
    correct1 = correct_k = 0
    nll_sum = 0.0
    count = 0
    for model in (m.model for m in members):
        model.eval().to(device)
    with torch.inference_mode():
        folder_side = folder_size or round((crop_size or _paper_side(_unwrap(members[0].model)) or 224) * 8 / 7)
        for images, labels in _batches(dataset, batch_size, device, folder_side, num_workers):
            log_probs = _ensemble_log_probs(members, images, tta, crop_size)
            labels = labels.to(device)
            top = log_probs.topk(k, dim=1).indices
            hits = top == labels[:, None]
            correct1 += int(hits[:, 0].sum())
            correct_k += int(hits.any(dim=1).sum())
            nll_sum += float(F.nll_loss(log_probs.float(), labels, reduction="sum"))
            count += labels.numel()
    if count == 0:
        raise DataError("the evaluation data set is empty")
    return {"top1": correct1 / count, "top5": correct_k / count, "loss": nll_sum / count, "n": count}


def predict_probabilities(
    model: nn.Module, adapter: Adapter, images: Tensor, *, tta: str = "none", crop_size: int | None = None
) -> Tensor:
    """Class probabilities (N×K) of a uint8 or float [0,1] batch at the run's data resolution."""
    _check_tta(tta)
    model.eval()
    with torch.inference_mode():
        return _ensemble_log_probs([EnsembleMember(model, adapter)], images, tta, crop_size).exp()


def predict(
    run: Any,
    image_paths: Sequence[str | os.PathLike[str]],
    *,
    topk: int = 5,
    tta: str = "none",
) -> list[dict[str, Any]]:
    """Top-``topk`` classes of each image file for a loaded run (``.model``, ``.adapter``,
    ``.config``, ``.classes``): ``[{"image", "predictions": [{"class", "index", "probability"}]}]``.

    Each file is decoded with PIL (no pickle, decompression-bomb guard on), converted to the
    run's channel count and resized to the resolution the run was trained at, so the adapter
    sees the same kind of batch as during training.
    """
    if topk < 1:
        raise InputError(f"--topk must be a positive integer, got {topk}")
    chans, height, width = _run_data_shape(run)
    crop_size, _ = run_eval_sizes(getattr(run, "config", None) or {})
    classes = list(getattr(run, "classes", None) or [])
    out = []
    for path in image_paths:
        image = load_image(path, chans, (height, width))
        probs = predict_probabilities(run.model, run.adapter, image[None], tta=tta, crop_size=crop_size)[0]
        k = min(topk, probs.numel())
        values, indices = probs.topk(k)
        out.append(
            {
                "image": str(path),
                "predictions": [
                    {
                        "class": classes[i] if i < len(classes) else str(i),
                        "index": i,
                        "probability": float(v),
                    }
                    for v, i in zip(values.tolist(), indices.tolist())
                ],
            }
        )
    return out


def load_image(path: str | os.PathLike[str], chans: int, size: tuple[int, int]) -> Tensor:
    """Decode an image file into a uint8 ``chans×H×W`` tensor at ``size`` (shorter side resized,
    centre-cropped when the aspect ratio differs); any failure is a one-line DataError.

    Decoding is the image-folder reader's (PIL, RGB, decompression-bomb guard); one channel is
    the ITU-R 601-2 luma that PIL's ``convert("L")`` computes.
    """
    from cnnatlas.data.augment import resize_shorter_and_center_crop
    from cnnatlas.data.folder import decode_image

    rgb = decode_image(str(path))  # a missing file, a folder, a FIFO or a device: one DataError saying which
    if chans == 1:
        luma = torch.tensor([299, 587, 114], dtype=torch.int32).view(3, 1, 1)
        image = (
            ((rgb.to(torch.int32) * luma).sum(0, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)
        )
    elif chans == 3:
        image = rgb
    else:
        # e.g. a run on 2- or 4-channel synthetic data: repeat the RGB planes and trim.
        image = rgb.repeat((chans + 2) // 3, 1, 1)[:chans]
    return resize_shorter_and_center_crop(image, size)


def run_eval_sizes(config: Any) -> tuple[int | None, int | None]:
    """``(crop_size, folder_size)`` for evaluating a run, from its config.json: the recipe's
    crop side (``recipe.image_size``) and the side image folders were decoded at during
    training (8/7 of the crop when the recipe augments, as the trainer does: 256 for 224)."""
    recipe = config.get("recipe") if isinstance(config, dict) else None
    crop = recipe.get("image_size") if isinstance(recipe, dict) else None
    if not crop:
        return None, None
    crop = int(crop)
    augments = (recipe.get("augment") or "none") != "none"
    return crop, (round(crop * 8 / 7) if augments else crop)


# -- internals ---------------------------------------------------------------------------------
def _check_tta(tta: str) -> None:
    if tta not in TTA_PROTOCOLS:
        raise InputError(f"unknown test-time protocol {tta!r}; choose one of {', '.join(TTA_PROTOCOLS)}")


def _as_member(run: Any) -> EnsembleMember:
    if isinstance(run, EnsembleMember):
        return run
    if isinstance(run, tuple) and len(run) == 2:
        return EnsembleMember(*run)
    if hasattr(run, "model") and hasattr(run, "adapter"):
        return EnsembleMember(run.model, run.adapter)
    raise InputError(f"cannot evaluate {type(run).__name__}: expected a loaded run or (model, adapter)")


def _num_classes(members: Sequence[EnsembleMember]) -> int:
    counts = {int(getattr(_unwrap(m.model), "num_classes", 0)) for m in members}
    if len(counts) != 1:
        raise InputError(f"ensemble members disagree on the number of classes: {sorted(counts)}")
    (count,) = counts
    return count


def _run_data_shape(run: Any) -> tuple[int, int, int]:
    """(C, H, W) that the run's adapter expects: the data set's image size from config.json
    when the trainer recorded it, else what the adapter and network imply."""
    adapter, model = run.adapter, run.model
    chans = int(getattr(adapter, "in_chans", getattr(model, "in_chans", 3)))
    config = getattr(run, "config", None) or {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    for source in (data, config):
        shape = source.get("image_size") or source.get("image_shape")
        if isinstance(shape, (list, tuple)) and len(shape) == 3:
            return chans, int(shape[1]), int(shape[2])
        if isinstance(shape, int):
            return chans, shape, shape
    _, folder_size = run_eval_sizes(config)
    if folder_size:  # an image-folder run: decoded at this side, centre-cropped by the protocol
        return chans, folder_size, folder_size
    pad = int(getattr(adapter, "pad", 0) or 0)
    fixed = getattr(model, "max_input_size", None)
    if pad and fixed is not None:
        side = int(fixed) - 2 * pad  # LeNet-5: 32 − 2·2 = the 28×28 MNIST digits it was trained on
    elif getattr(adapter, "resize", None):
        side = int(adapter.resize)
    else:
        side = max(_paper_side(model) or 224, int(getattr(model, "min_input_size", 1) or 1))
    return chans, side, side


@lru_cache(maxsize=None)
def _paper_side_of(name: str) -> int | None:
    # The registration's static metadata only: model_info() would build the network on the
    # meta device, which costs seconds for the large ones and tells us nothing more here.
    from cnnatlas.registry import lookup

    try:
        return int(lookup(name).info.input_size[-1])
    except Exception:  # noqa: BLE001 - an unregistered or test-built network has no paper size
        return None


def _paper_side(model: nn.Module) -> int | None:
    name = getattr(model, "model_name", "")
    return _paper_side_of(name) if name else None


def _batches(
    dataset: Any, batch_size: int, device: torch.device, folder_side: int, num_workers: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    images = getattr(dataset, "images", None)
    if isinstance(images, Tensor):
        labels = dataset.labels
        for start in range(0, images.shape[0], batch_size):
            # Slicing the uint8 tensor is a view; the copy to the device is the only transfer.
            yield images[start : start + batch_size].to(device, non_blocking=True), labels[start : start + batch_size]
        return
    yield from _folder_batches(dataset, batch_size, device, folder_side, num_workers)


def _folder_batches(
    dataset: Any, batch_size: int, device: torch.device, folder_side: int, num_workers: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    from torch.utils.data import DataLoader

    from cnnatlas.data.augment import folder_sample_transform

    if getattr(dataset, "transform", None) is None:
        # Images of varying size must be brought to one square side to stack: the paper
        # convention of a 256 decode for a 224 network (ratio 8/7), centre crops taken later.
        dataset = copy.copy(dataset)
        dataset.transform = folder_sample_transform(False, folder_side)
    workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    from cnnatlas.data.core import iterate_loader

    for images, labels in iterate_loader(loader):
        yield images.to(device, non_blocking=True), labels


def _ensemble_log_probs(
    members: Sequence[EnsembleMember], images: Tensor, tta: str, crop_size: int | None = None
) -> Tensor:
    """log of the softmax averaged over every member and every view: N×K."""
    stacked = []
    for member in members:
        inner = _unwrap(member.model)
        ready = member.adapter(images)
        for view in _views(ready, tta, inner, crop_size or _paper_side(inner)):
            output = member.model(view)
            logits = inner.main_logits(output) if hasattr(inner, "main_logits") else output
            stacked.append(F.log_softmax(logits.float(), dim=1))
    if len(stacked) == 1:
        return stacked[0]
    # log(mean(p)) computed as logsumexp(log p) − log(count): exact where p underflows.
    return torch.logsumexp(torch.stack(stacked), dim=0) - math.log(len(stacked))


def _unwrap(model: nn.Module) -> nn.Module:
    """The AtlasModel inside a DistributedDataParallel (``.module``) or ``torch.compile``
    (``._orig_mod``) wrapper, for its metadata and ``main_logits``; calls still go through
    the wrapper."""
    for _ in range(3):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def _views(x: Tensor, tta: str, model: nn.Module, paper_side: int | None) -> list[Tensor]:
    """The batches one protocol feeds the network; ``paper_side`` is the training crop side."""
    side = min(x.shape[-2:])
    if tta == "none":
        if paper_side is not None and side > paper_side:
            return [_center_crop(x, paper_side)]
        return [x]
    if tta == "flip":
        base = _views(x, "none", model, paper_side)[0]
        return [base, base.flip(-1)]
    if tta == "10crop":
        crop = paper_side if paper_side is not None and side > paper_side else (side * 7) // 8
        crops = _five_crops(x, crop)
        if not _accepts_side(model, crop):
            crops = [F.interpolate(c, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False) for c in crops]
        return crops + [c.flip(-1) for c in crops]
    # multiscale
    if getattr(model, "max_input_size", None) is not None:
        raise InputError(
            f"{getattr(model, 'display_name', type(model).__name__)} takes a fixed input size, so it cannot be "
            "evaluated at several scales; use --tta 10crop or flip"
        )
    views = []
    for scale in (side - side // 8, side, side + side // 8):
        if not _accepts_side(model, scale):
            continue
        sized = x if scale == side else _resize_shorter(x, scale)
        views += [sized, sized.flip(-1)]
    if not views:
        raise InputError(f"no scale of {side - side // 8}..{side + side // 8} pixels suits this network")
    return views


def _accepts_side(model: nn.Module, side: int) -> bool:
    low = getattr(model, "min_input_size", 1) or 1
    high = getattr(model, "max_input_size", None)
    return side >= low and (high is None or side <= high)


def _center_crop(x: Tensor, side: int) -> Tensor:
    height, width = x.shape[-2:]
    top, left = (height - side) // 2, (width - side) // 2
    return x[..., top : top + side, left : left + side]


def _five_crops(x: Tensor, side: int) -> list[Tensor]:
    height, width = x.shape[-2:]
    corners = [(0, 0), (0, width - side), (height - side, 0), (height - side, width - side)]
    return [x[..., top : top + side, left : left + side] for top, left in corners] + [_center_crop(x, side)]


def _resize_shorter(x: Tensor, side: int) -> Tensor:
    height, width = x.shape[-2:]
    scale = side / min(height, width)
    size = (max(side, round(height * scale)), max(side, round(width * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
