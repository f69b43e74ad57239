"""Inference speed of the fast path against torchvision's eager model, in one process.

For each model, at one batch size (default 16), every variant is timed in interleaved rounds
(each round calls every variant once, after warm-up), so a load change on a shared machine
hits all variants alike; the median of the rounds is reported with the interquartile range.

Variants:

* **reference** — torchvision's model of the same architecture, eager, NCHW, fp32 (our own
  eager model where torchvision has none, e.g. MobileNet v1);
* **ours eager** — the cnnatlas network as built (NCHW, fp32);
* **channels-last** — the same, NHWC;
* **fast** — ``cnnatlas.fast.fast_model``: batch norm folded, channels-last, inference mode;
* **fast + compile** — the same through ``torch.compile`` with inductor's weight freezing (``--compile``);
* **onnxruntime** — the folded network exported to ONNX, run by ONNX Runtime;
* **fast bf16** — with bf16 autocast; only where the CPU has native bf16, or with ``--bf16``.

Each variant's logits are compared with ours eager fp32 on the timed batch (top-1 agreement,
largest difference relative to the largest logit). GFLOP/s = 2 × analyser MACs × images/s;
the peak is derived by ``cnnatlas.bench.machine_peak`` (printed).

``--profile`` adds, per model, where the fast copy's time goes: self CPU time per operator group
under ``torch.profiler``, and the convolutions by kind (1×1, k×k, depthwise) with the GFLOP/s
each kind achieves — which says whether anything but faster convolution kernels could help.

``--digits`` trains LeNet-5 on the bundled MNIST sample (its default recipe, ``--digit-epochs``
epochs) and reports how often the bf16 fast copy's top-1 agrees with fp32 on the 1,000 bundled
test digits (bf16 is emulated where the CPU lacks it; the numbers are the same, only slower).

Usage: ``python benchmarks/bench_infer.py [--models resnet50 vgg16 …] [--batch 16] [--rounds 7]
[--variants channels-last fast compile onnxruntime bf16] [--compile] [--bf16] [--threads N]
[--profile] [--digits [--digit-epochs 5]]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

import cnnatlas
from cnnatlas.bench import environment, machine_peak, make_runner
from cnnatlas.fast import compare_logits, fast_model, main_logits, native_bf16


def variants(name: str, x: torch.Tensor, args: argparse.Namespace) -> dict[str, Callable[[torch.Tensor], Any]]:
    import torchvision

    torch.manual_seed(0)
    ours = cnnatlas.create_model(name).eval()
    info = cnnatlas.model_info(name)
    out: dict[str, Callable[[torch.Tensor], Any]] = {}
    if info.torchvision_name:
        reference = getattr(torchvision.models, info.torchvision_name)(**_tv_kwargs(info.torchvision_name)).eval()
        reference.load_state_dict(ours.state_dict(), strict=False)  # same weights where the keys agree
        out["reference (torchvision eager NCHW)"] = reference
    else:
        out["reference (ours eager NCHW)"] = copy.deepcopy(ours)
    out["ours eager NCHW"] = ours  # the logits every variant is compared with
    wanted = set(args.variants)
    if "channels-last" in wanted:
        nhwc = copy.deepcopy(ours).to(memory_format=torch.channels_last)
        out["channels-last"] = lambda t: nhwc(t.contiguous(memory_format=torch.channels_last))
    if "fast" in wanted:
        out["fast (fold + channels-last)"] = fast_model(ours, x[:1])
    if "compile" in wanted or args.compile:
        out["fast + torch.compile"] = fast_model(ours, x[:1], compile=True)
    if "onnxruntime" in wanted:
        cpu = torch.device("cpu")
        out["onnxruntime (folded)"] = make_runner(ours, "onnxruntime", "fp32", cpu, x, args.threads).call
    if "bf16" in wanted and (native_bf16("cpu") or args.bf16):
        out["fast bf16" + ("" if native_bf16("cpu") else " (emulated)")] = fast_model(ours, x[:1], dtype="bf16")
    return out


def _tv_kwargs(tv_name: str) -> dict[str, Any]:
    # torchvision's GoogLeNet builds auxiliary heads and transforms inputs unless told not to
    return {"aux_logits": False, "init_weights": False} if tv_name == "googlenet" else {}


def interleaved(fns: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm-up (and compilation) outside the timed rounds
            fn(x)
            fn(x)
        for _ in range(rounds):
            for key, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - start)
    return times


def _logits(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        out = fn(x)
    if isinstance(out, list):  # a session's list of outputs
        out = out[0]
    if isinstance(out, np.ndarray):  # ONNX Runtime returns numpy arrays
        return torch.from_numpy(out)
    if not isinstance(out, torch.Tensor) and hasattr(out, "logits"):
        return out.logits
    return main_logits(model, out)


def _conv_kind(weight_shape: list[int]) -> str:
    """``1×1``, ``k×k`` or ``depthwise k×k`` from a convolution weight's shape (out, in/groups, kh, kw)."""
    _, per_group, kh, kw = weight_shape
    if (kh, kw) == (1, 1):
        return "1×1"
    return f"{'depthwise ' if per_group == 1 else ''}{kh}×{kw}"


def profile_fast(name: str, x: torch.Tensor, calls: int = 3) -> None:
    """Self CPU time of the fast copy by operator group, and its convolutions by kind."""
    from torch.profiler import ProfilerActivity, profile

    from cnnatlas.analysis.memory import quiet_profiler_backend

    torch.manual_seed(0)
    fast = fast_model(cnnatlas.create_model(name).eval(), x[:1])
    macs: dict[str, int] = {}

    def count(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        kind = _conv_kind(list(module.weight.shape))
        per_output = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        macs[kind] = macs.get(kind, 0) + output.numel() * per_output

    handles = [m.register_forward_hook(count) for m in fast.prepared.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        fast(x)
    for handle in handles:
        handle.remove()
    with torch.inference_mode():
        fast(x)
        start = time.perf_counter()
        for _ in range(calls):
            fast(x)
        plain = (time.perf_counter() - start) / calls
        with quiet_profiler_backend(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            start = time.perf_counter()
            for _ in range(calls):
                fast(x)
            wall = (time.perf_counter() - start) / calls
    # The first match wins (addmm before add); each group names the aten operators doing that work.
    groups = {
        "convolution": ("convolution",),
        "fully connected": ("addmm", "linear", "aten::mm"),
        "ReLU and other activations": ("relu", "clamp", "hardtanh", "sigmoid", "tanh"),
        "additions (shortcuts, LRN windows), concatenation": ("aten::add", "aten::cat"),
        "batch norm that could not be folded": ("batch_norm",),
        "pooling": ("pool", "aten::mean"),
        "products and powers (LRN)": ("aten::mul", "aten::pow", "aten::div"),
        "layout copies": ("copy_", "contiguous", "clone"),
    }
    totals = {group: 0.0 for group in groups} | {"other (framework, allocation)": 0.0}
    conv_us: dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        group = next((g for g, needles in groups.items() if any(n in event.key for n in needles)), None)
        totals[group or "other (framework, allocation)"] += event.self_cpu_time_total
        if event.key == "aten::mkldnn_convolution" and len(event.input_shapes) > 1:
            kind = _conv_kind(event.input_shapes[1])
            conv_us[kind] = conv_us.get(kind, 0.0) + event.self_cpu_time_total
    whole = sum(totals.values())
    print(
        f"\n### where the fast copy's time goes: {name}, batch {x.shape[0]}, {1e3 * plain:.0f} ms per batch, "
        f"{1e3 * wall:.0f} ms under the profiler (whose times are below)"
    )
    print("| operator group | ms per batch | share |")
    print("|---|---|---|")
    for group, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        if us >= 5e-4 * whole:  # groups under 0.05 % are left out
            print(f"| {group} | {us / 1e3 / calls:.1f} | {100 * us / whole:.1f}% |")
    peak = machine_peak("cpu").flops
    print("\n| convolution kind | G-MACs per image | ms per batch | GFLOP/s | of peak |")
    print("|---|---|---|---|---|")
    for kind, us in sorted(conv_us.items(), key=lambda kv: -kv[1]):
        seconds = us / 1e6 / calls
        gflops = 2 * macs.get(kind, 0) / seconds / 1e9 if seconds else 0.0
        share = f"{100 * gflops * 1e9 / peak:.1f}%" if peak else "–"
        print(f"| {kind} | {macs.get(kind, 0) / x.shape[0] / 1e9:.3f} | {1e3 * seconds:.1f} | {gflops:.1f} | {share} |")


def digit_agreement(epochs: float) -> None:
    import tempfile

    from cnnatlas.data import load_dataset
    from cnnatlas.train.run import load_run
    from cnnatlas.train.trainer import train

    with tempfile.TemporaryDirectory() as out:
        train("lenet5", out=f"{out}/run", epochs=epochs, device="cpu")
        run = load_run(f"{out}/run")
    test = load_dataset("mnist-sample", split="test")
    x = run.adapter(test.images)
    fp32 = fast_model(run.model, x[:1])
    bf16 = fast_model(run.model, x[:1], dtype="bf16")
    with torch.inference_mode():
        a, b = fp32(x), bf16(x)
    agreement = compare_logits(a, b, "bf16")
    accuracy = [float((logits.argmax(1) == test.labels).float().mean()) for logits in (a, b)]
    print(
        f"\n# LeNet-5, {epochs:g} epochs on the bundled sample: top-1 fp32 {100 * accuracy[0]:.2f} %, "
        f"bf16 {100 * accuracy[1]:.2f} %; bf16 agrees with fp32 on {100 * agreement.top1_agreement:.2f} % "
        f"of {agreement.samples} test digits (max relative logit error {agreement.max_relative_error:.1e}, "
        f"tolerance {agreement.tolerance:g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet50", "vgg16", "googlenet", "densenet121", "mobilenet_v1_100"]
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="add the compiled variant (slow to compile)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["channels-last", "fast", "onnxruntime", "bf16"],
        choices=["channels-last", "fast", "compile", "onnxruntime", "bf16"],
        help="which variants to time beside the reference and ours eager",
    )
    parser.add_argument("--bf16", action="store_true", help="also time bf16 where it is emulated")
    parser.add_argument("--profile", action="store_true", help="where the fast copy's time goes, per model")
    parser.add_argument("--digits", action="store_true", help="LeNet-5 bf16 vs fp32 agreement on the test digits")
    parser.add_argument("--digit-epochs", type=float, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment("cpu")
    peak = machine_peak("cpu")
    print(f"# {env['cpu']}, {env['cores']} cores, {env['threads']} threads, torch {env['torch']}, batch {args.batch}")
    print(f"# peak: {peak.derivation}; native bf16: {env['native_bf16']}; load average {os.getloadavg()}")
    for name in args.models:
        info = cnnatlas.model_info(name)
        x = torch.randn(args.batch, *info.input_size, generator=torch.Generator().manual_seed(0))
        macs = cnnatlas.analyze(name).totals["macs"]
        fns = variants(name, x, args)
        ours = fns["ours eager NCHW"]
        reference_logits = _logits(ours, x, ours)  # type: ignore[arg-type]
        times = interleaved(fns, x, args.rounds)
        ref_key = next(iter(fns))
        ref = statistics.median(times[ref_key])
        print(f"\n## {name} ({macs / 1e9:.2f} G-MACs per image), {args.rounds} interleaved rounds")
        print(
            "| variant | images/s | IQR (ms/batch) | vs reference | GFLOP/s | of peak | top-1 agreement | max rel. error |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for key, samples in times.items():
            median = statistics.median(samples)
            q1, _, q3 = statistics.quantiles(samples, n=4)
            rate = args.batch / median
            gflops = 2 * macs * rate / 1e9
            agreement = compare_logits(
                reference_logits, _logits(fns[key], x, ours), "bf16" if "bf16" in key else "fp32"
            )  # type: ignore[arg-type]
            print(
                f"| {key} | {rate:.1f} | {1e3 * (q3 - q1):.1f} | {ref / median:.2f}× | {gflops:.1f} | "
                f"{100 * gflops * 1e9 / peak.flops:.1f}% | {100 * agreement.top1_agreement:.0f}% | "
                f"{agreement.max_relative_error:.1e} |"
            )
        if args.profile:
            profile_fast(name, x)
    if args.digits:
        digit_agreement(args.digit_epochs)
    print(f"\n# load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
