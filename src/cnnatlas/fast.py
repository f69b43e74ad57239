"""The fast inference path: a copy of a network made for inference, checked against eager fp32.

:func:`fast_model` returns a copy (the network it is given is never changed) in which

* every eval-mode batch norm that directly follows a convolution whose output nothing else
  reads is folded into that convolution (``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β``, with
  ``σ = √(running_var + eps)``), so it costs nothing at run time;
* every local response normalisation (AlexNet, ZFNet, GoogLeNet, VGG A-LRN) computes its
  window sum as a few shifted additions instead of PyTorch's padded 3-D average pool
  (:class:`ShiftedSumLRN`, the same function; GoogLeNet's fast copy spent a third of its time
  in PyTorch's form, docs/benchmarks.md);
* weights and activations are channels-last (NHWC), the layout oneDNN's CPU convolutions and
  cuDNN's tensor-core kernels prefer;
* calls run under ``torch.inference_mode`` (no autograd bookkeeping);
* optionally ``torch.compile`` with inductor's weight freezing fuses the activations into the
  convolutions and prepacks the weights (``compile=True``);
* and under bf16 (or fp16) autocast where that is native: on a GPU, or on a CPU whose flags
  list AVX-512 BF16 or AMX-BF16 (:func:`native_bf16`). ``dtype="auto"`` picks bf16 only
  there; asking for ``"bf16"`` explicitly on another CPU works but is emulated, and slow.

:func:`check_fast` runs both on the same batch and reports the top-1 agreement and the largest
logit difference relative to the largest eager logit; :data:`TOLERANCE` holds the stated
limits (fp32 1e-4; bf16, whose 8-bit mantissa rounds every product to ~0.4 %, 5e-2).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from cnnatlas.errors import InputError
from cnnatlas.layers import LocalResponseNorm

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Largest |fast − eager| logit difference allowed, relative to the largest |eager| logit.
# fp32: folding and another summation order only; bf16/fp16: a rounded product in every MAC.
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 1e-2}
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


# -- what the hardware offers ----------------------------------------------------------------
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(device: str | torch.device = "cpu", flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 products in hardware: any CUDA GPU of compute capability
    8.0 or newer, or a CPU with AVX-512 BF16 or AMX-BF16 in its flags. Never assumed: an
    unreadable flag list means no."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


def resolve_dtype(dtype: str, device: str | torch.device = "cpu") -> str:
    """``fp32``/``bf16``/``fp16`` as given; ``auto`` → bf16 where native (:func:`native_bf16`), else fp32."""
    if dtype == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    if dtype == "fp16" and torch.device(device).type == "cpu":
        raise InputError("fp16 inference needs a GPU; on a CPU use bf16 or fp32")
    return dtype


# -- batch-norm folding ----------------------------------------------------------------------
class _UseCounter(TorchFunctionMode):
    """Counts, for each tracked tensor, the torch calls that take it and compute a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.tracked: dict[int, Tensor] = {}  # id → tensor, kept alive so ids stay unique
        self.uses: dict[int, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        if isinstance(result, Tensor):
            for arg in (*args, *(kwargs or {}).values()):
                for item in arg if isinstance(arg, (list, tuple)) else (arg,):
                    if isinstance(item, Tensor) and id(item) in self.tracked:
                        self.uses[id(item)] = self.uses.get(id(item), 0) + 1
        return result


def foldable_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(conv path, batch-norm path)`` pairs where the batch norm reads a convolution's output
    and nothing else does, found by running ``example`` through ``model`` once (eval mode).

    Data flow is observed, not guessed from module order: a pre-activation network's
    BN → ReLU → conv, a dense block's concatenation and a shortcut that reads a convolution's
    output are left alone.
    """
    counter = _UseCounter()
    conv_of_output: dict[int, str] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str, int]] = []
    handles = []

    def after_conv(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[path] = calls.get(path, 0) + 1
            if isinstance(output, Tensor):
                counter.tracked[id(output)] = output
                conv_of_output[id(output)] = path

        return hook

    def before_norm(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            calls[path] = calls.get(path, 0) + 1
            source = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
            if source is not None and id(source) in conv_of_output:
                pairs.append((conv_of_output[id(source)], path, id(source)))

        return hook

    for path, module in model.named_modules():
        if type(module) is nn.Conv2d:
            handles.append(module.register_forward_hook(after_conv(path)))
        elif type(module) is nn.BatchNorm2d:
            handles.append(module.register_forward_pre_hook(before_norm(path)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [
        (conv, norm)
        for conv, norm, output in pairs
        # one call of each module (a shared module cannot be folded for one of its uses) and
        # the batch norm's call the only use of the convolution's output
        if calls.get(conv) == 1 and calls.get(norm) == 1 and counter.uses.get(output, 0) == 1
    ]


def fold_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``norm(conv(x))`` with eval-mode statistics."""
    if norm.running_mean is None or norm.running_var is None:
        raise InputError("a batch norm without running statistics cannot be folded")
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else None
        if scale is None:
            scale = 1.0 / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        fused.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
        fused.bias = nn.Parameter((bias - norm.running_mean) * scale + shift, requires_grad=False)
    return fused


def fold_batchnorm(model: nn.Module, example: Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every foldable batch norm folded into its
    convolution and replaced by ``nn.Identity``; returns the copy and the number folded."""
    pairs = foldable_pairs(model, example)
    folded = copy.deepcopy(model).eval()
    modules = dict(folded.named_modules())
    for conv_path, norm_path in pairs:
        _set_submodule(folded, conv_path, fold_conv_bn(modules[conv_path], modules[norm_path]))
        _set_submodule(folded, norm_path, nn.Identity())
    return folded, len(pairs)


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


# -- local response normalisation -------------------------------------------------------------
class ShiftedSumLRN(nn.Module):
    """``F.local_response_norm(x, size, alpha, beta, k)`` for 4-D input, computed without a pool.

    b_c = a_c · (k + α/n · Σ a_{c'}²)^(−β) over the ``n = size`` channels c − ⌊n/2⌋ … c + ⌊(n−1)/2⌋
    that exist. PyTorch pads the squares along channels and runs a 3-D average pool over them,
    whose CPU kernel is slow on that (N, 1, C, H, W) view. Here the window sum is the squares
    plus ``n − 1`` shifted copies of themselves, added in place: each a plain elementwise pass,
    in whatever memory format the input has. Made for inference (the fast copy); training and
    the analyser keep PyTorch's form.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        # alpha as F.local_response_norm takes it (divided by size inside, Caffe's convention)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    @classmethod
    def replacing(cls, module: LocalResponseNorm | nn.LocalResponseNorm) -> ShiftedSumLRN:
        """The same normalisation as ``module``: torch's ``nn.LocalResponseNorm`` (Caffe's
        alpha) or cnnatlas's :class:`~cnnatlas.layers.LocalResponseNorm` (the paper's alpha)."""
        alpha = module.alpha * module.size if isinstance(module, LocalResponseNorm) else module.alpha
        return cls(module.size, alpha, module.beta, module.k)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        squares = x * x
        window = squares.clone()
        for shift in range(1, self.size // 2 + 1):  # channels below c
            window[:, shift:] += squares[:, :-shift]
        for shift in range(1, (self.size - 1) // 2 + 1):  # channels above c
            window[:, :-shift] += squares[:, shift:]
        return x * window.mul_(self.alpha / self.size).add_(self.k).pow_(-self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha} (divided by size), beta={self.beta}, k={self.k}"


def replace_local_response_norms(model: nn.Module) -> int:
    """Swap every LRN module of ``model`` (changed in place) for :class:`ShiftedSumLRN`; returns how many."""
    paths = [p for p, m in model.named_modules() if isinstance(m, (LocalResponseNorm, nn.LocalResponseNorm))]
    for path in paths:
        _set_submodule(model, path, ShiftedSumLRN.replacing(model.get_submodule(path)))
    return len(paths)


# -- the fast model --------------------------------------------------------------------------
@dataclass(frozen=True)
class FastSettings:
    """What :func:`fast_model` did, for reports and for the environment record of a benchmark."""

    dtype: str
    channels_last: bool
    folded_batchnorms: int
    compiled: bool
    device: str
    shifted_sum_lrns: int = 0


class FastModel(nn.Module):
    """Wraps the prepared copy: inference mode, channels-last input, autocast, logits as fp32.

    Attributes the evaluation code reads off a network (``num_classes``, ``model_name``,
    ``max_input_size``, ``main_logits`` …) are forwarded to the original's copy.
    """

    def __init__(self, prepared: nn.Module, settings: FastSettings, runner: nn.Module | None = None) -> None:
        super().__init__()
        self.prepared = prepared
        self.settings = settings
        # Not a registered submodule: a compiled wrapper shares ``prepared``'s parameters, which
        # must appear once in state_dict() and parameters().
        object.__setattr__(self, "_runner", runner if runner is not None else prepared)

    def forward(self, x: Tensor) -> Any:
        device_type = torch.device(self.settings.device).type
        with torch.inference_mode():
            if self.settings.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if self.settings.dtype == "fp32":
                return _to_float(self._runner(x))
            with torch.autocast(device_type, dtype=DTYPES[self.settings.dtype]):
                return _to_float(self._runner(x))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("prepared"), name)


def _to_float(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output.float()
    if isinstance(output, (tuple, list)):
        return type(output)(_to_float(o) for o in output)
    return output


def fast_model(
    model: nn.Module,
    example: Tensor,
    *,
    dtype: str = "fp32",
    device: str | torch.device = "cpu",
    channels_last: bool = True,
    fold: bool = True,
    compile: bool = False,
) -> FastModel:
    """The fast inference copy of ``model`` (see the module docstring); ``example`` is one
    input batch of the shape it will see (used to find the foldable batch norms, on the CPU
    copy, before the move to ``device``)."""
    dtype = resolve_dtype(dtype, device)
    device = torch.device(device)
    source = model.eval()
    example = example.to(next(iter(source.parameters()), example).device)
    if fold:
        prepared, folded = fold_batchnorm(source, example)
    else:
        prepared, folded = copy.deepcopy(source).eval(), 0
    lrns = replace_local_response_norms(prepared)
    prepared = prepared.to(device)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    # Inductor's freezing treats the weights as constants: folded into the graph and prepacked
    # for oneDNN once, with the activations fused into the convolutions.
    runner = torch.compile(prepared, options={"freezing": True}) if compile else None
    settings = FastSettings(
        dtype=dtype,
        channels_last=channels_last,
        folded_batchnorms=folded,
        compiled=compile,
        device=str(device),
        shifted_sum_lrns=lrns,
    )
    return FastModel(prepared, settings, runner)


# -- checks against eager fp32 ---------------------------------------------------------------
def main_logits(model: nn.Module, output: Any) -> Tensor:
    """The main classifier's logits of an output (GoogLeNet in training mode returns a tuple)."""
    inner = model.prepared if isinstance(model, FastModel) else model
    if hasattr(inner, "main_logits"):
        return inner.main_logits(output)
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass(frozen=True)
class Agreement:
    """How a variant's logits compare with eager fp32 on one batch.

    A sample whose arg-max differs is a *tie* when eager's own margin between the two classes
    is within twice the largest logit difference: rounding of that size may order them either
    way, so such a flip says nothing against the variant. Any other flip fails :attr:`ok`.
    """

    top1_agreement: float  # fraction of samples whose arg-max class is the same
    max_relative_error: float  # max |variant − eager| ÷ max |eager|
    tolerance: float
    samples: int
    flips_beyond_ties: int = 0

    @property
    def ok(self) -> bool:
        return self.flips_beyond_ties == 0 and self.max_relative_error <= self.tolerance


def compare_logits(
    reference: Tensor, candidate: Tensor, dtype: str = "fp32", tolerance: float | None = None
) -> Agreement:
    """Top-1 agreement and relative logit error of ``candidate`` against ``reference``, judged
    against ``tolerance`` (default: the dtype's, :data:`TOLERANCE`)."""
    reference, candidate = reference.detach().float().cpu(), candidate.detach().float().cpu()
    if reference.shape != candidate.shape:
        raise InputError(f"outputs differ in shape: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    scale = float(reference.abs().max()) or 1.0
    max_error = float((reference - candidate).abs().max())
    ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
    flipped = ref_top != cand_top
    rows = torch.arange(reference.shape[0])
    margin = reference[rows, ref_top] - reference[rows, cand_top]
    return Agreement(
        top1_agreement=float((~flipped).float().mean()),
        max_relative_error=max_error / scale,
        tolerance=TOLERANCE[dtype] if tolerance is None else tolerance,
        samples=reference.shape[0],
        flips_beyond_ties=int((flipped & (margin > 2 * max_error)).sum()),
    )


def check_fast(model: nn.Module, fast: FastModel, batch: Tensor) -> Agreement:
    """Run eager fp32 ``model`` and its fast copy on ``batch``; their :class:`Agreement`."""
    model.eval()
    batch = batch.to(next(iter(model.parameters()), batch).device)
    with torch.inference_mode():
        reference = main_logits(model, model(batch))
    candidate = main_logits(fast, fast(batch.to(fast.settings.device)))
    return agreement_with_eager(model, batch, reference, candidate, fast.settings.dtype)


def agreement_with_eager(
    model: nn.Module, batch: Tensor, reference: Tensor, candidate: Tensor, dtype: str
) -> Agreement:
    """:func:`compare_logits` of ``candidate`` against eager ``reference`` (``model`` on ``batch``).

    Where that fails in fp32 without a real top-1 flip, the tolerance is widened to 4× eager fp32's
    own distance from float64 on the same batch: over a thousand layers float32 rounding alone
    moves the logits by ~2e-3 relative (pre-activation ResNet-1001: eager 1.7e-3 from float64,
    channels-last 2.4e-3 from eager), so any reordering of the arithmetic does too. The fixed
    1e-4 still holds every network of ordinary depth.
    """
    agreement = compare_logits(reference, candidate, dtype)
    if agreement.ok or dtype != "fp32" or agreement.flips_beyond_ties:
        return agreement
    with torch.inference_mode():
        exact = main_logits(model, copy.deepcopy(model).double()(batch.double())).float()
    drift = compare_logits(exact, reference.float()).max_relative_error
    return compare_logits(reference, candidate, dtype, tolerance=max(TOLERANCE[dtype], 4 * drift))
