"""Analyser speed and totals against fvcore and ptflops on the same models.

    python benchmarks/bench_analyze.py [MODEL ...] [--repeat N] [--batch N] [--all]

cnnatlas traces on the meta device (no weights, no arithmetic); fvcore (FlopCountAnalysis,
a JIT trace plus a real forward) and ptflops (get_model_complexity_info, module hooks on a
real forward) need a built model with real weights and run real arithmetic. Times are the
best of N runs of the analysis call on an already built model, for all three tools (ours is
given the model built on the meta device); "ours+build" is ``analyze(name)``, our meta build
included, and "build" their model construction with real weights, because a user pays it
too. Totals are printed side by side; the conventions that explain each difference are in
docs/benchmarks.md. ``--batch`` analyses a batch of N images: our trace does not depend on
it, their real forward passes do.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
import warnings

import torch

import cnnatlas
from cnnatlas.analysis import analyze

DEFAULT_MODELS = ["alexnet", "vgg16", "googlenet", "resnet50", "densenet121", "mobilenet_v1_100"]


def best_of(repeat: int, fn) -> tuple[float, object]:  # noqa: ANN001
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--all", action="store_true", help="also time every registered model once, in total (target < 30 s)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the bare meta-device forward under a dispatch mode that only runs the ops: the lower "
        "bound of any tracer that sees ATen ops, as ours must to equal FlopCounterMode",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    from fvcore.nn import FlopCountAnalysis
    from ptflops import get_model_complexity_info

    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"batch {args.batch}")
    header = f"{'model':18s} {'ours s':>8s} {'ours+build':>10s} {'fvcore s':>9s} {'ptflops s':>9s} {'build s':>8s} {'speed-up':>8s} | {'ours MACs':>15s} {'fvcore':>15s} {'ptflops':>15s} | {'ours params':>12s} {'ptflops':>12s}"
    print(header)
    print("-" * len(header))
    speedups, end_to_end = [], []
    floor_rows: list[tuple[str, tuple[int, ...], float, float]] = []
    for name in args.models:
        info = cnnatlas.model_info(name)
        meta_model = cnnatlas.registry.create_meta_model(name)
        ours_t, ours = best_of(args.repeat, lambda: analyze(meta_model, batch=args.batch))
        named_t, _ = best_of(args.repeat, lambda: analyze(name, batch=args.batch))
        build_t, model = best_of(1, lambda: cnnatlas.create_model(name).eval())
        x = torch.randn(args.batch, *info.input_size)

        def run_fvcore() -> int:
            analysis = FlopCountAnalysis(model, x)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return int(analysis.total())

        fv_t, fv_total = best_of(args.repeat, run_fvcore)
        pt_t, (pt_macs, pt_params) = best_of(
            args.repeat,
            lambda: get_model_complexity_info(
                model,
                tuple(info.input_size),
                as_strings=False,
                print_per_layer_stat=False,
                verbose=False,
                input_constructor=lambda size: x,
            ),
        )
        pt_macs = int(pt_macs) * args.batch  # ptflops reports the average per image of the batch
        speedup = min(fv_t, pt_t) / ours_t
        speedups.append(speedup)
        floor_rows.append((name, tuple(info.input_size), ours_t, min(fv_t, pt_t)))
        end_to_end.append((build_t + min(fv_t, pt_t)) / named_t)
        print(
            f"{name:18s} {ours_t:8.3f} {named_t:10.3f} {fv_t:9.3f} {pt_t:9.3f} {build_t:8.3f} {speedup:7.1f}× | "
            f"{ours.totals['macs']:15,d} {fv_total:15,d} {int(pt_macs):15,d} | {ours.totals['params']:12,d} {int(pt_params):12,d}"
        )
    print(
        f"speed-up over the faster of fvcore/ptflops (analysis call on a built model): min {min(speedups):.1f}×, max {max(speedups):.1f}×"
    )
    print(
        f"speed-up from a model name to its totals (each tool's build included): min {min(end_to_end):.1f}×, max {max(end_to_end):.1f}×"
    )
    if args.floor:
        from cnnatlas.analysis.trace import _OpDispatchMode

        print(f"{'model':18s} {'floor s':>8s} {'ours s':>8s} {'fastest of theirs ÷ floor':>26s}")
        for name, input_size, ours_t, theirs_t in floor_rows:
            meta_model = cnnatlas.registry.create_meta_model(name).eval()
            x = torch.empty(args.batch, *input_size, device="meta")

            def bare_dispatch() -> None:
                # No autograd (ours needs it for the saved-tensor memory estimate), no hooks, no
                # bookkeeping: only PyTorch's dispatch of each op to a meta kernel.
                with torch.no_grad(), _OpDispatchMode(lambda *_: None):
                    meta_model(x)

            floor_t, _ = best_of(args.repeat, bare_dispatch)
            print(f"{name:18s} {floor_t:8.3f} {ours_t:8.3f} {theirs_t / floor_t:25.1f}×")
    if args.all:
        names = cnnatlas.list_models()
        start = time.perf_counter()
        per_model = []
        for name in names:
            t, _ = best_of(1, lambda: analyze(name))
            per_model.append((t, name))
        total = time.perf_counter() - start
        slowest = ", ".join(f"{n} {t:.2f} s" for t, n in sorted(per_model)[-3:])
        print(f"all {len(names)} registered models at their default inputs: {total:.1f} s (slowest: {slowest})")


if __name__ == "__main__":
    main()
