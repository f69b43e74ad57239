"""Measured speed: time, throughput, memory and achieved GFLOP/s against batch size.

The figures of Canziani, Paszke & Culurciello 2016 ("An Analysis of Deep Neural Network
Models for Practical Applications", Figs. 3–4): forward time per image and memory against
batch size, and operations against time. :func:`bench_model` measures one network at several
batch sizes with one backend:

``eager``        the network as built, NCHW, plain PyTorch (autocast for bf16/fp16)
``fast``         :func:`cnnatlas.fast.fast_model`: batch norm folded, channels-last, inference mode
``compile``      ``fast`` plus ``torch.compile``
``onnxruntime``  the network exported to ONNX (dynamic batch) and run by ONNX Runtime

Each batch size is warmed up, then timed repeatedly until the interquartile range is within
``target_spread`` of the median (or the repeat/time budget runs out); the median and the IQR
are reported, never one sample. Achieved GFLOP/s is ``2 × MACs ÷ time`` with the analyser's
exact MACs (training: ``3 × 2 × MACs``, forward plus the two backward products), and its
fraction of :func:`machine_peak`, derived from the CPU's core count, clock and vector units.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from cnnatlas.errors import InputError
from cnnatlas.fast import DTYPES, cpu_flags, native_bf16

BACKENDS = ("eager", "fast", "compile", "onnxruntime")
MODES = ("infer", "train")
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
# Two FMA pipes per core: every x86 core since Intel Haswell (2013) and AMD Zen 2 (2019), and
# Arm Neoverse V1/N2 (2 × 128-bit or wider). An older core would make this an overestimate.
FMA_PIPES = 2


# -- the machine -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Peak:
    """A machine's peak fp32 FLOP/s and how it was derived."""

    flops: float | None
    derivation: str


def _cpuinfo_field(name: str, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_clock_ghz() -> float | None:
    """The clock the kernel reports (``cpu MHz``; for a VM the host's nominal clock)."""
    value = _cpuinfo_field("cpu MHz")
    try:
        return float(value) / 1000 if value else None
    except ValueError:
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def fp32_lanes(flags: frozenset[str]) -> int:
    """fp32 numbers per vector register: 16 with AVX-512, 8 with AVX/AVX2, 4 with SSE or Neon."""
    if "avx512f" in flags:
        return 16
    if "avx" in flags or "avx2" in flags:
        return 8
    return 4


def machine_peak(
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    *,
    cores: int | None = None,
    clock_ghz: float | None = None,
    flags: frozenset[str] | None = None,
) -> Peak:
    """Peak FLOP/s = cores × clock × FLOP per cycle per core, with the derivation written out.

    FLOP per cycle = FMA pipes (:data:`FMA_PIPES`) × fp32 lanes × 2 (an FMA is a multiply and
    an add); without FMA in the flags, a separate multiply and add pipe give the same count.
    bf16 with AVX-512 BF16 doubles it (``vdpbf16ps`` does two products per fp32 lane); AMX-BF16
    tiles do 1,024 bf16 FLOP per cycle per core. GPUs: not derived here (``flops=None``).
    """
    if torch.device(device).type != "cpu":
        return Peak(None, "no peak is derived for GPUs; fractions are left empty")
    flags = cpu_flags() if flags is None else flags
    cores = cores or usable_cores()
    clock = clock_ghz or cpu_clock_ghz()
    if not clock:
        return Peak(None, "the CPU clock is not reported (/proc/cpuinfo has no 'cpu MHz')")
    lanes = fp32_lanes(flags)
    per_cycle = FMA_PIPES * lanes * 2
    vector = {16: "AVX-512", 8: "AVX2"}.get(lanes, "SSE/Neon")
    unit = f"{FMA_PIPES} FMA pipes × {lanes} fp32 lanes ({vector}) × 2"
    if dtype == "bf16" and "amx_bf16" in flags:
        per_cycle, unit = 1024, "AMX-BF16 tiles: 1,024 bf16 FLOP"
    elif dtype == "bf16" and "avx512_bf16" in flags:
        per_cycle, unit = per_cycle * 2, f"{unit} × 2 (AVX-512 BF16 dot products)"
    flops = cores * clock * 1e9 * per_cycle
    return Peak(flops, f"{cores} cores × {clock:.3f} GHz × {per_cycle} FLOP/cycle ({unit}) = {flops / 1e9:.1f} GFLOP/s")


def environment(device: str | torch.device = "cpu", threads: int | None = None) -> dict[str, Any]:
    """What a result was measured on: CPU model, cores, threads, flags that matter, torch."""
    device = torch.device(device)
    flags = cpu_flags()
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "threads": threads or torch.get_num_threads(),
        "clock_ghz": cpu_clock_ghz(),
        "vector_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sve", "asimd"))),
        "native_bf16": native_bf16(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# -- timing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Seconds per call: the samples, their median and interquartile range."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 4:
            return max(self.samples) - min(self.samples)
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return q3 - q1


def time_calls(
    call: Callable[[], Any],
    *,
    sync: Callable[[], None] = lambda: None,
    warmup: int = 2,
    min_repeats: int = 5,
    max_repeats: int = 50,
    max_seconds: float = 20.0,
    target_spread: float = 0.05,
) -> Timing:
    """Warm up, then time ``call`` until the IQR is within ``target_spread`` × median (after
    ``min_repeats``), or ``max_repeats`` samples, or ``max_seconds`` of timing."""
    for _ in range(warmup):
        call()
    sync()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_repeats:
        begin = time.perf_counter()
        call()
        sync()
        samples.append(time.perf_counter() - begin)
        if len(samples) >= min_repeats:
            timing = Timing(tuple(samples))
            if timing.iqr <= target_spread * timing.median or time.perf_counter() - started > max_seconds:
                break
    return Timing(tuple(samples))


def peak_memory(call: Callable[[], Any], device: torch.device, resident: Sequence[Tensor]) -> tuple[int, str]:
    """Bytes at the peak of one call, and how that was measured: the CUDA allocator's peak;
    on the CPU the tensors alive before the call (``resident``: weights, buffers, input,
    optimiser state) plus the largest running sum of the profiler's allocation record."""
    from cnnatlas.analysis.memory import cpu_allocation_peak, tensor_bytes

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device), "cuda allocator peak"
    return tensor_bytes(resident) + cpu_allocation_peak(call), "resident tensors + profiler allocation peak"


# -- runners -----------------------------------------------------------------------------------
@dataclass
class Runner:
    """One way of running a network on a batch; ``check`` compares it with eager fp32."""

    call: Callable[[Tensor], Any]
    description: str
    agreement: dict[str, Any] | None = None
    cleanup: Callable[[], None] = lambda: None
    resident: list[Tensor] | None = field(default_factory=list)  # None: memory not visible to torch


def _model_tensors(model: nn.Module) -> list[Tensor]:
    return [*model.parameters(), *model.buffers()]


def _autocast(device: torch.device, dtype: str) -> Any:
    import contextlib

    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def make_runner(
    model: nn.Module,
    backend: str,
    dtype: str,
    device: torch.device,
    example: Tensor,
    threads: int | None = None,
    check: bool = True,
) -> Runner:
    """A :class:`Runner` for inference with ``backend`` (see the module docstring)."""
    from cnnatlas.fast import agreement_with_eager, check_fast, fast_model, main_logits

    model = model.eval()
    if backend == "eager":
        moved = model.to(device)

        def eager(x: Tensor) -> Any:
            with torch.inference_mode(), _autocast(device, dtype):
                return moved(x)

        return Runner(eager, f"eager NCHW {dtype}", resident=_model_tensors(moved))
    if backend in ("fast", "compile"):
        fast = fast_model(model, example.cpu(), dtype=dtype, device=device, compile=backend == "compile")
        agreement = asdict(check_fast(model.to(device), fast, example)) if check else None
        s = fast.settings
        description = (
            f"{s.folded_batchnorms} BN folded, {'channels-last' if s.channels_last else 'NCHW'}, {s.dtype}"
            + (f", {s.shifted_sum_lrns} LRN as shifted sums" if s.shifted_sum_lrns else "")
            + (", torch.compile" if s.compiled else "")
        )
        return Runner(fast, description, agreement, resident=_model_tensors(fast))
    if backend == "onnxruntime":
        if dtype != "fp32":
            raise InputError("--backend onnxruntime measures the fp32 export; use --dtype fp32")
        from cnnatlas.export import export_onnx, onnxruntime_session

        folder = tempfile.TemporaryDirectory(prefix="cnnatlas-bench-")
        path = Path(folder.name) / "model.onnx"
        export_onnx(model.cpu(), path, example.cpu(), dynamic_batch=True, fold_bn=True)
        session = onnxruntime_session(path, threads=threads)
        input_name = session.get_inputs()[0].name

        def run_ort(x: Tensor) -> Any:
            return session.run(None, {input_name: x.cpu().numpy()})[0]

        agreement = None
        if check:
            with torch.inference_mode():
                reference = main_logits(model, model.cpu()(example.cpu()))
            ort_logits = torch.from_numpy(run_ort(example))
            agreement = asdict(agreement_with_eager(model, example.cpu(), reference, ort_logits, "fp32"))
        # ONNX Runtime allocates in its own arena, which torch's profiler does not see.
        return Runner(run_ort, "ONNX Runtime, CPU execution provider, BN folded", agreement, folder.cleanup, None)
    raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


# -- one model, several batch sizes ------------------------------------------------------------
@dataclass
class BenchRow:
    """One (model, backend, dtype, mode, batch) measurement."""

    model: str
    backend: str
    dtype: str
    mode: str
    batch: int
    input_shape: list[int]
    ms_per_batch: float
    iqr_ms: float
    ms_per_image: float
    images_per_s: float
    repeats: int
    peak_memory_bytes: int | None
    memory_method: str
    macs_per_image: int
    gflops: float
    peak_fraction: float | None
    description: str = ""
    agreement: dict[str, Any] | None = None


@dataclass
class BenchResult:
    """Every row of one ``cnnatlas bench`` call and the environment it ran in."""

    environment: dict[str, Any]
    peak: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "peak": self.peak, "results": [asdict(r) for r in self.rows]}


def parse_batches(text: str) -> tuple[int, ...]:
    """ "1,2,4" → (1, 2, 4)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--batch takes comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"--batch takes comma-separated positive integers, got {text!r}")
    return values


def bench_model(
    model: nn.Module,
    name: str,
    input_size: Sequence[int],
    macs_per_image: int,
    *,
    batches: Sequence[int] = DEFAULT_BATCHES,
    mode: str = "infer",
    backend: str = "eager",
    dtype: str = "fp32",
    device: str | torch.device = "cpu",
    threads: int | None = None,
    peak: Peak | None = None,
    max_seconds: float = 20.0,
    measure_memory: bool = True,
) -> list[BenchRow]:
    """Measure ``model`` at each batch size; ``macs_per_image`` comes from the analyser."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = torch.device(device)
    if mode == "train" and backend != "eager":
        raise InputError("--mode train measures the eager network; use --backend eager")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    peak = peak or machine_peak(device, dtype)
    generator = torch.Generator().manual_seed(0)
    rows = []
    runner = None
    if mode == "infer":
        example = torch.randn((min(batches), *input_size), generator=generator).to(device)
        runner = make_runner(model, backend, dtype, device, example, threads)
    try:
        for batch in batches:
            x = torch.randn((batch, *input_size), generator=generator).to(device)
            if mode == "infer":
                assert runner is not None

                def call(x: Tensor = x) -> Any:
                    return runner.call(x)

                description, agreement, flop_factor = runner.description, runner.agreement, 2
                resident = None if runner.resident is None else [*runner.resident, x]
            else:
                call, resident = _train_step(model, x, device, dtype)
                description, agreement, flop_factor = f"SGD step, {dtype}", None, 6
            timing = time_calls(call, sync=sync, max_seconds=max_seconds)
            memory, method = None, "not measured"
            if measure_memory and resident is not None:
                memory, method = peak_memory(call, device, resident)
            seconds = timing.median
            gflops = flop_factor * macs_per_image * batch / seconds / 1e9
            rows.append(
                BenchRow(
                    model=name,
                    backend=backend,
                    dtype=dtype,
                    mode=mode,
                    batch=batch,
                    input_shape=[batch, *input_size],
                    ms_per_batch=seconds * 1e3,
                    iqr_ms=timing.iqr * 1e3,
                    ms_per_image=seconds * 1e3 / batch,
                    images_per_s=batch / seconds,
                    repeats=len(timing.samples),
                    peak_memory_bytes=memory,
                    memory_method=method,
                    macs_per_image=macs_per_image,
                    gflops=gflops,
                    peak_fraction=gflops * 1e9 / peak.flops if peak.flops else None,
                    description=description,
                    agreement=agreement,
                )
            )
    finally:
        if runner is not None:
            runner.cleanup()
    return rows


def _train_step(
    model: nn.Module, x: Tensor, device: torch.device, dtype: str
) -> tuple[Callable[[], None], list[Tensor]]:
    """One SGD step (forward, cross-entropy, backward, update) on random labels, and the
    tensors that stay alive between steps (weights, momentum, input, labels)."""
    from cnnatlas.fast import main_logits

    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    num_classes = int(getattr(model, "num_classes", 0) or 1000)
    labels = torch.randint(0, num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(1)).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            logits = main_logits(model, model(x))
            loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()

    step()  # creates the momentum buffers, as after the first step of any run
    momentum = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]
    return step, [*_model_tensors(model), *momentum, x, labels]


def fit_time_against_operations(points: Sequence[tuple[float, float]]) -> dict[str, float] | None:
    """Least-squares fit ``ms per image = a + b × G-MACs per image`` over ``(G-MACs, ms)``
    points (one per model) and its R², to answer whether operations predict speed."""
    if len({p[0] for p in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mean_x) ** 2 for p in points)
    sxy = sum((p[0] - mean_x) * (p[1] - mean_y) for p in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_res = sum((p[1] - intercept - slope * p[0]) ** 2 for p in points)
    ss_tot = sum((p[1] - mean_y) ** 2 for p in points)
    return {"intercept_ms": intercept, "ms_per_gmac": slope, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}
