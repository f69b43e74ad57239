"""Training memory per step: the estimate the analyser prints, and a real measurement.

Estimate (all in bytes, for the batch size and optimiser given)::

    parameters + buffers            every parameter and buffer, in the analysis dtype
  + gradients                       one per trainable parameter
  + optimiser state                 SGD 0×, SGD with momentum 1×, Adam 2× the trainable bytes
  + activations saved for backward  the distinct tensors autograd's saved_tensors_hooks see
                                    during the meta-device forward (input included), plus, for
                                    every dropout layer, the mask (1 byte per element) and the
                                    new output that training-mode dropout creates

What it leaves out, and why the measured peak is higher: the transient gradients of the
activations during backward (about the size of the largest layer or two at a time), the
framework's workspaces (e.g. oneDNN's convolution buffers), and allocator rounding.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from cnnatlas.errors import InputError

OPTIMIZER_STATE_FACTOR = {"sgd": 0, "momentum": 1, "adam": 2}


def optimizer_state_bytes(trainable_bytes: int, optimizer: str) -> int:
    try:
        return OPTIMIZER_STATE_FACTOR[optimizer] * trainable_bytes
    except KeyError:
        raise InputError(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_STATE_FACTOR)}"
        ) from None


def _make_optimizer(params: Any, optimizer: str) -> torch.optim.Optimizer:
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=1e-4)
    if optimizer == "momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    return torch.optim.SGD(params, lr=1e-3)


def tensor_bytes(tensors: Any) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in seen:
            seen.add(t.untyped_storage()._cdata)
            total += t.untyped_storage().nbytes()
    return total


def _loss(model: nn.Module, out: Any, target: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "training_loss"):
        return model.training_loss(out, target)
    logits = out if isinstance(out, torch.Tensor) else out[0]
    return nn.functional.cross_entropy(logits, target)


@contextmanager
def quiet_profiler_backend() -> Iterator[None]:
    """Kineto, the profiler's C++ back end, writes "profiler_start"/"profiler_stop" lines (and,
    on a machine without a GPU, a gpuGetDeviceCount error) straight to the process's stderr, which
    would land in the middle of `cnnatlas summary --measure` or `cnnatlas bench` output. Its
    KINETO_LOG_LEVEL 6 silences them; it is read when the profiler starts, so the variable is set
    only for that moment, and a level the user chose is left alone."""
    chosen = os.environ.get("KINETO_LOG_LEVEL")
    if chosen is None:
        os.environ["KINETO_LOG_LEVEL"] = "6"
    try:
        yield
    finally:
        if chosen is None:
            os.environ.pop("KINETO_LOG_LEVEL", None)


def cpu_allocation_peak(call: Callable[[], Any]) -> int:
    """The largest running sum of CPU allocations minus frees while ``call()`` runs, in bytes,
    from the profiler's memory accounting (``profile_memory=True``: every allocation and free
    with a timestamp). Tensors alive before the call are not included."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_profiler_backend(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def measure_training_step(
    model: nn.Module,
    input_shape: Sequence[int],
    optimizer: str = "momentum",
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Peak memory of one real training step (forward, backward, optimiser step) in bytes.

    A first, unmeasured step creates the optimiser state, as in every step of a real run after
    the first; gradients are then released (``set_to_none``) and the second step is measured.

    * CUDA: ``torch.cuda.max_memory_allocated`` over the measured step (it includes everything
      allocated, parameters and optimiser state too).
    * CPU: the profiler's memory accounting (``torch.profiler`` with ``profile_memory=True``)
      records every allocation and free inside its window with a timestamp; the peak is the
      largest running sum of those, plus the bytes already alive when the window opens
      (parameters, buffers, optimiser state, the input batch and its labels).
    """
    device = torch.device(device)
    model = model.to(device).train()
    num_classes = int(getattr(model, "num_classes", 10))
    x = torch.randn(*input_shape, device=device)
    target = torch.randint(0, num_classes, (input_shape[0],), device=device)
    opt = _make_optimizer([p for p in model.parameters() if p.requires_grad], optimizer)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        _loss(model, model(x), target).backward()
        opt.step()

    step()
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)), "method": "torch.cuda.max_memory_allocated"}

    baseline = tensor_bytes(
        [*model.parameters(), *model.buffers(), x, target]
        + [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    )
    peak = cpu_allocation_peak(step)
    return {
        "peak_bytes": int(baseline + peak),
        "baseline_bytes": int(baseline),
        "method": "torch.profiler profile_memory: alive before the step + largest running sum of allocations",
    }
