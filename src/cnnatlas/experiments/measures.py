"""Measurements an experiment makes besides its runs' final metrics.

Each measure reads the finished runs (or builds the arms' networks) and returns a JSON-able
dict for ``results["extra"][name]``; per-arm numbers also go to ``results["arms"][arm]
["measured"]`` as summaries over seeds or repeats, so the report and the significance rule
treat them like any metric.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnatlas.experiments import stats
from cnnatlas.experiments.spec import Experiment

#: AlexNet 2012 Fig. 1's criterion: training error 25 %.
TARGET_TRAIN_ERROR = 0.25
#: Steps averaged when reading "the training error at step s" off the noisy per-batch values.
STEP_WINDOW = 20
#: VGG §3.2: test scales Q = {S − 32, S, S + 32} at S = 256, i.e. 7/8, 1 and 9/8 of the side.
TEST_SCALES = (7 / 8, 1.0, 9 / 8)
TIMING_BATCH = 64
TIMING_REPEATS = 5


def _runs(results: Mapping[str, Any], arm: str) -> list[dict[str, Any]]:
    return list(results["arms"][arm]["runs"])


def _measured(results: dict[str, Any], arm: str, key: str, values: list[float]) -> None:
    results["arms"][arm].setdefault("measured", {})[key] = stats.summary(values)


def _test_set(config: Mapping[str, Any]) -> Any:
    from cnnatlas.data import load_dataset

    data = config["data"]
    dataset = load_dataset(data["name"], root=data.get("root"), split="test", **dict(data.get("options", {})))
    limit = config.get("limit_test")
    if limit is not None and limit < len(dataset):
        dataset.images, dataset.labels = dataset.images[:limit].contiguous(), dataset.labels[:limit].contiguous()
    return dataset


def _train_batch(config: Mapping[str, Any], size: int = 64) -> tuple[Tensor, Tensor]:
    from cnnatlas.data import load_dataset

    data = config["data"]
    dataset = load_dataset(data["name"], root=data.get("root"), split="train", **dict(data.get("options", {})))
    return dataset.images[:size], dataset.labels[:size]


# -- timing ------------------------------------------------------------------------------------
def timing(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """Measured inference time of each arm's network (batch 64, eval mode, median of 5), next
    to its MACs: does a MAC saved turn into time saved on this machine?"""
    from cnnatlas.train.run import build_model_from_config, read_config

    # the smoke budget checks the plumbing only: a small batch, timed twice
    batch, repeats = (8, 2) if results["budget"] == "smoke" else (TIMING_BATCH, TIMING_REPEATS)
    out: dict[str, Any] = {"batch": batch, "repeats": repeats, "arms": {}}
    for arm in results["arms"]:
        runs = _runs(results, arm)
        if not runs:
            continue
        config = read_config(runs[0]["run_dir"])
        model = build_model_from_config(config).eval()
        size = results["arms"][arm]["input_size"]
        x = torch.randn(batch, *size)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):
                start = time.perf_counter()
                model(x)
                if i >= 2:  # two warm-up passes (allocator, oneDNN kernel choice)
                    times.append(time.perf_counter() - start)
        ms = [1000 * t / batch for t in times]
        _measured(results, arm, "inference_ms_per_image", ms)
        out["arms"][arm] = {"ms_per_image": statistics.median(ms), "macs": results["arms"][arm]["macs"]}
    return out


# -- head share -------------------------------------------------------------------------------
def head_share(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """Parameters in the classifier head (``head.*``) as a share of the network's."""
    from cnnatlas.registry import create_meta_model

    out = {}
    for arm_name, entry in results["arms"].items():
        arm = exp.arm(arm_name)
        model = create_meta_model(arm.model, num_classes=10, in_chans=entry["input_size"][0], **dict(arm.model_options))
        total = sum(p.numel() for p in model.parameters())
        head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("head."))
        out[arm_name] = {"head_params": head, "params": total, "head_share": head / total}
    return out


# -- steps to a target training error ---------------------------------------------------------
def steps_to_target_error(steps: list[Mapping[str, float]], target: float, window: int = STEP_WINDOW) -> int | None:
    """The first step at which the mean training error of the last ``window`` steps is ≤ ``target``."""
    errors = [1.0 - float(s["acc"]) for s in steps]
    running = 0.0
    for i, error in enumerate(errors):
        running += error
        if i >= window:
            running -= errors[i - window]
        if i + 1 >= window and running / window <= target:
            return int(steps[i]["step"])
    return None


def steps_to_target(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {"target_train_error": TARGET_TRAIN_ERROR, "window": STEP_WINDOW, "arms": {}}
    for arm in results["arms"]:
        reached, curves = [], []
        for run in _runs(results, arm):
            path = Path(run["run_dir"]) / "steps.json"
            steps = json.loads(path.read_text())["steps"] if path.is_file() else []
            reached.append(steps_to_target_error(steps, TARGET_TRAIN_ERROR))
            curves.append(_smoothed(steps))
        hit = [r for r in reached if r is not None]
        if hit:
            _measured(results, arm, "steps_to_target", [float(r) for r in hit])
        out["arms"][arm] = {"steps": reached, "reached": f"{len(hit)}/{len(reached)}", "curves": curves}
    return out


def _smoothed(steps: list[Mapping[str, float]], window: int = STEP_WINDOW) -> list[list[float]]:
    """(step, mean training error of the window ending there), every ``window // 2`` steps."""
    points = []
    for end in range(window, len(steps) + 1, max(1, window // 2)):
        chunk = steps[end - window : end]
        points.append([float(chunk[-1]["step"]), 1.0 - sum(float(s["acc"]) for s in chunk) / window])
    return points


# -- gradient norms per layer -----------------------------------------------------------------
def gradient_norms(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """The gradient norm of every weight layer at initialisation, for one batch of 64 training
    images: saturating activations shrink it layer after layer away from the loss."""
    from cnnatlas.train.adapt import InputAdapter
    from cnnatlas.train.run import build_model_from_config, read_config

    out: dict[str, Any] = {"batch": 64, "arms": {}}
    for arm in results["arms"]:
        runs = _runs(results, arm)
        if not runs:
            continue
        config = read_config(runs[0]["run_dir"])
        torch.manual_seed(0)
        model = build_model_from_config(config).train()
        images, labels = _train_batch(config)
        x = InputAdapter.from_dict(config["adapter"])(images)
        F.cross_entropy(model(x), labels).backward()
        layers = [
            (name.removesuffix(".weight"), float(p.grad.norm()))
            for name, p in model.named_parameters()
            if name.endswith("weight") and p.dim() > 1 and p.grad is not None
        ]
        out["arms"][arm] = {"layers": [n for n, _ in layers], "norms": [v for _, v in layers]}
    return out


# -- ensembles --------------------------------------------------------------------------------
def ensemble(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """Test error of the softmax average of the first k runs, k = 1 … N, per arm."""
    from cnnatlas.train.evaluate import ensemble_evaluate
    from cnnatlas.train.run import load_run

    out: dict[str, Any] = {"arms": {}}
    for arm in results["arms"]:
        runs = [load_run(r["run_dir"]) for r in _runs(results, arm)]
        if not runs:
            continue
        dataset = _test_set(runs[0].config)
        errors = [1.0 - ensemble_evaluate(runs[:k], dataset, batch_size=256)["top1"] for k in range(1, len(runs) + 1)]
        singles = [1.0 - ensemble_evaluate([r], dataset, batch_size=256)["top1"] for r in runs]
        out["arms"][arm] = {
            "members": list(range(1, len(runs) + 1)),
            "ensemble_error": errors,
            "single_errors": singles,
        }
        _measured(results, arm, "ensemble_error", [errors[-1]])
    return out


# -- multi-scale testing ----------------------------------------------------------------------
def multi_scale_probabilities(model: torch.nn.Module, x: Tensor, scales: tuple[float, ...] = TEST_SCALES) -> Tensor:
    """Softmax averaged over the model-ready batch resized to each scale of its side (VGG §3.2,
    without the mirror images: digits are not mirror-symmetric)."""
    side = x.shape[-1]
    total = None
    for scale in scales:
        size = round(side * scale)
        view = (
            x
            if size == side
            else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < side)
        )
        probs = F.softmax(model(view), dim=1)
        total = probs if total is None else total + probs
    assert total is not None
    return total / len(scales)


def multiscale(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """Each run's test error at one scale and averaged over three scales."""
    from cnnatlas.train.run import load_run

    out: dict[str, Any] = {"scales": list(TEST_SCALES), "arms": {}}
    for arm in results["arms"]:
        single, multi = [], []
        for record in _runs(results, arm):
            run = load_run(record["run_dir"])
            dataset = _test_set(run.config)
            right_single = right_multi = 0
            with torch.inference_mode():
                for start in range(0, len(dataset), 256):
                    x = run.adapter(dataset.images[start : start + 256])
                    labels = dataset.labels[start : start + 256]
                    right_single += int((run.model(x).argmax(1) == labels).sum())
                    right_multi += int((multi_scale_probabilities(run.model, x).argmax(1) == labels).sum())
            single.append(1.0 - right_single / len(dataset))
            multi.append(1.0 - right_multi / len(dataset))
        _measured(results, arm, "single_scale_test_error", single)
        _measured(results, arm, "multi_scale_test_error", multi)
        out["arms"][arm] = {"single_scale": single, "multi_scale": multi, "paired": stats.welch(single, multi)}
    return out


# -- model parallelism ------------------------------------------------------------------------


def model_parallel(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    """AlexNet 2012 on one device and split over two: same logits for the same weights, time of
    a training step, and the bytes the towers exchange per image."""
    import cnnatlas
    from cnnatlas.registry import model_info

    devices = ("cuda:0", "cuda:1") if torch.cuda.device_count() >= 2 else ("cpu", "cpu")
    side = model_info("alexnet_2012").input_size[1]
    batch = int(results["recipe_overrides"].get("batch_size", 4))
    steps = int(results["recipe_overrides"].get("iterations", 3))
    out: dict[str, Any] = {
        "devices": list(devices),
        "batch": batch,
        "steps_timed": steps,
        "input_side": side,
        "seeds": {},
    }
    times: dict[str, list[float]] = {"one-device": [], "two-devices": []}
    for seed in results["seeds"]:
        torch.manual_seed(seed)
        single = cnnatlas.create_model("alexnet_2012").to(devices[0])
        split = cnnatlas.create_model("alexnet_2012", devices=devices)
        split.load_state_dict(single.state_dict())
        moved: list[int] = []
        original = split._exchange

        def counting(a: Tensor, b: Tensor, original: Callable[..., Any] = original, moved: list[int] = moved) -> Any:
            moved.append(a.numel() * a.element_size() + b.numel() * b.element_size())
            return original(a, b)

        split._exchange = counting  # type: ignore[method-assign]
        x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            a = single.eval()(x.to(devices[0]))
            moved.clear()
            b = split.eval()(x)
        exchanged = sum(moved) / batch
        for label, model in (("one-device", single), ("two-devices", split)):
            times[label].append(_train_step_time(model.train(), x, devices[0], steps))
        out["seeds"][str(seed)] = {
            "max_abs_logit_difference": float((a.cpu() - b.cpu()).abs().max()),
            "exchanged_bytes_per_image": exchanged,
        }
    for label, values in times.items():
        if label in results["arms"]:
            _measured(results, label, "step_time_s", values)
    return out


def _train_step_time(model: torch.nn.Module, x: Tensor, device: str, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    elapsed = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x.to(device)).to(device), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i:  # the first step warms up
            elapsed.append(time.perf_counter() - start)
    return statistics.median(elapsed)


MEASURES: dict[str, Callable[[Experiment, dict[str, Any], Path, str], dict[str, Any]]] = {
    "timing": timing,
    "head_share": head_share,
    "steps_to_target": steps_to_target,
    "gradient_norms": gradient_norms,
    "ensemble": ensemble,
    "multiscale": multiscale,
    "model_parallel": model_parallel,
}


def run_measures(exp: Experiment, results: dict[str, Any], folder: Path, device: str) -> dict[str, Any]:
    return {name: MEASURES[name](exp, results, folder, device) for name in exp.measures}
