"""Training throughput on CIFAR-size data: the cnnatlas trainer vs a plain PyTorch loop.

Both train the same network (ResNet-20, He et al. 2015 §4.2) with the same batch, optimiser
and augmentation on synthetic 32×32 RGB images, in one process, one after the other:

* **ours** — ``cnnatlas.train.train`` (data set as one uint8 tensor on the device, pad-crop-flip
  done on whole batches, no per-sample Python), images/s read from its metrics (the training
  part of each epoch, evaluation excluded);
* **reference** — the torchvision tutorial loop: a Dataset of PIL images with per-sample
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, a
  ``DataLoader`` (shuffle, workers), SGD.

Usage: ``python benchmarks/bench_train.py [--model resnet20] [--images 2048] [--batch 128]
[--repeats 3] [--device cpu] [--workers 0 2]``. Prints one table; record it in docs/benchmarks.md.

``--ceiling`` prints instead, for ResNet-20 (batch 128, 32×32 RGB), LeNet-5 (batch 64, 28×28
digits padded to 32) and VGG-11 (batch 128, 32×32 RGB, 10 classes), the trainer's images/s and
its achieved GFLOP/s — 3 × 2 × the analyser's forward MACs per image (the forward product and
the two backward ones, for the input and the weight gradients) × images/s — as a fraction of the
machine's peak (``cnnatlas.bench.machine_peak``, derivation printed); with ``--compile`` ResNet-20
is also trained through ``torch.compile`` (its first epoch, which compiles, is not counted). ``--profile`` adds a
``torch.profiler`` table of where one ResNet-20 training step's time goes, grouped by operator;
``--batchnorm`` times a training-mode batch norm against the convolution before it.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from typing import Any

import torch


def reference_images_per_s(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch: int,
    workers: int,
    device: torch.device,
    mean,
    std,
) -> float:
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    import cnnatlas

    class PilDataset(Dataset):  # what torchvision.datasets.CIFAR10 does: HWC uint8 → PIL per sample
        def __init__(self) -> None:
            self.data = images.permute(0, 2, 3, 1).numpy()
            self.targets = labels.tolist()
            self.transform = transforms.Compose(
                [
                    transforms.RandomCrop(32, padding=4),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(mean, std),
                ]
            )

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(np.ascontiguousarray(self.data[i]))), self.targets[i]

    torch.manual_seed(0)
    model = cnnatlas.create_model(model_name, num_classes=10, in_chans=3).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(
        PilDataset(),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # the same per-step synchronisation our trainer does (loss for the progress bar)
        seen += y.shape[0]
    return seen / (time.perf_counter() - start)


def ours_images_per_s(
    model_name: str,
    n: int,
    batch: int,
    device: str,
    recipe: str = "resnet_cifar",
    image_size: tuple[int, int, int] = (3, 32, 32),
    compile: bool = False,
) -> float:
    """Training images/s of the trainer's last epoch (a compiled run gets a first epoch to
    compile in, which is not counted)."""
    from cnnatlas.train.trainer import train

    with tempfile.TemporaryDirectory() as out:
        result = train(
            model_name,
            out=f"{out}/run",
            data="synthetic",
            recipe=recipe,
            epochs=2 if compile else 1,
            batch_size=batch,
            device=device,
            compile=compile,
            limit_test=batch,
            data_options={"num_samples": n, "image_size": image_size, "num_classes": 10},
        )
    return float(result.metrics[-1]["images_per_s"])


# (model, recipe, data image size, network input size, batch)
CEILING_RUNS = (
    ("resnet20", "resnet_cifar", (3, 32, 32), (3, 32, 32), 128),
    ("lenet5", "lenet5", (1, 28, 28), (1, 32, 32), 64),
    ("vgg11", "resnet_cifar", (3, 32, 32), (3, 32, 32), 128),
)


def ceiling_table(images: int, repeats: int, device: str, compile: bool = False) -> None:
    import cnnatlas
    from cnnatlas.bench import environment, machine_peak

    peak = machine_peak(device)
    env = environment(device)
    print(f"# {env['cpu']}, {env['cores']} cores, {env['threads']} threads, torch {env['torch']}, {device}")
    print(f"# peak: {peak.derivation}; load average at start {env['load_average']}")
    print("| model | batch | forward MACs/image | images/s (mean ± std) | GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|")
    runs = [(*run, False) for run in CEILING_RUNS]
    if compile:  # ResNet-20 again through torch.compile, right after its eager runs
        runs.insert(1, (*CEILING_RUNS[0], True))
    for model, recipe, data_size, net_size, batch, compiled in runs:
        macs = cnnatlas.analyze(model, input_size=net_size, num_classes=10, in_chans=net_size[0]).totals["macs"]
        rates = [ours_images_per_s(model, images, batch, device, recipe, data_size, compiled) for _ in range(repeats)]
        mean = statistics.mean(rates)
        std = statistics.stdev(rates) if len(rates) > 1 else 0.0
        gflops = 6 * macs * mean / 1e9
        fraction = f"{100 * gflops * 1e9 / peak.flops:.1f}%" if peak.flops else "–"
        label = f"{model} (torch.compile)" if compiled else model
        print(f"| {label} | {batch} | {macs:,} | {mean:.1f} ± {std:.1f} | {gflops:.1f} | {fraction} |")


def batchnorm_table(batch: int, rounds: int = 10) -> None:
    """ResNet-20's first stage (16 channels, 32×32): a training-mode batch norm against the 3×3
    convolution before it, NCHW and channels-last, and batch norm written as ``var_mean`` plus
    one multiply-add (forward and backward), in interleaved rounds."""
    torch.manual_seed(0)
    channels = 16
    norm = torch.nn.BatchNorm2d(channels).train()
    x = torch.randn(batch, channels, 32, 32)
    x_last = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv_last = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    weight = torch.ones(channels, requires_grad=True)
    bias = torch.zeros(channels, requires_grad=True)

    def composite(t: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(t, dim=(0, 2, 3), unbiased=False, keepdim=True)
        scale = weight.view(1, -1, 1, 1) * torch.rsqrt(var + norm.eps)
        return t * scale + (bias.view(1, -1, 1, 1) - mean * scale)

    def forward_backward(fn: Any, t: torch.Tensor) -> Any:
        def run() -> None:
            inp = t.detach().requires_grad_()
            fn(inp).sum().backward()

        return run

    calls = {
        "batch norm forward, NCHW": lambda: norm(x),
        "batch norm forward, channels-last": lambda: norm(x_last),
        "3×3 conv forward, NCHW": lambda: conv(x),
        "3×3 conv forward, channels-last": lambda: conv_last(x_last),
        "batch norm fwd+bwd, channels-last": forward_backward(norm, x_last),
        "var_mean + multiply-add fwd+bwd, channels-last": forward_backward(composite, x_last),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    print(f"\n# ResNet-20 first stage, batch {batch}, 16 channels, 32×32, {rounds} interleaved rounds")
    print("| operation | median ms |")
    print("|---|---|")
    for key, samples in times.items():
        print(f"| {key} | {1e3 * statistics.median(samples):.2f} |")


def profile_table(batch: int, steps: int = 5) -> None:
    """Self CPU time per operator group over ``steps`` ResNet-20 training steps, as the trainer
    runs them (channels-last, SGD with momentum, batch augmentation excluded)."""
    from torch.profiler import ProfilerActivity, profile

    import cnnatlas
    from cnnatlas.analysis.memory import quiet_profiler_backend

    torch.manual_seed(0)
    model = cnnatlas.create_model("resnet20").train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    with quiet_profiler_backend(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    # Checked in this order (the first match wins): backward kernels before the forward ones
    # whose names they contain.
    groups = {
        "convolution backward": ("convolution_backward",),
        "batch norm backward": ("batch_norm_backward",),
        "convolution forward": ("mkldnn_convolution", "convolution"),
        "batch norm forward": ("native_batch_norm", "batch_norm"),
        "ReLU forward and backward": ("relu", "threshold_backward", "clamp_min"),
        "optimizer (SGD, momentum, weight decay)": ("_foreach", "add_", "mul_", "sgd", "lerp"),
        "memory format copies": ("copy_", "clone", "contiguous", "to_dense", "reorder"),
    }
    totals = {name: 0.0 for name in groups} | {"other": 0.0}
    for event in prof.key_averages():
        self_us = event.self_cpu_time_total
        for name, needles in groups.items():
            if any(needle in event.key for needle in needles):
                totals[name] += self_us
                break
        else:
            totals["other"] += self_us
    whole = sum(totals.values())
    print(
        f"\n# ResNet-20 training step, batch {batch}: {1e3 * wall:.1f} ms wall per step ({batch / wall:.0f} images/s)"
    )
    print("| operator group | self CPU ms per step | share |")
    print("|---|---|---|")
    for name, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {us / 1e3 / steps:.1f} | {100 * us / whole:.1f}% |")
    print("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--ceiling", action="store_true", help="trainer images/s and GFLOP/s against the peak")
    parser.add_argument("--compile", action="store_true", help="with --ceiling: ResNet-20 through torch.compile too")
    parser.add_argument("--profile", action="store_true", help="where a ResNet-20 step's time goes")
    parser.add_argument("--batchnorm", action="store_true", help="batch norm against convolution, first stage")
    args = parser.parse_args()
    if args.batchnorm:
        batchnorm_table(args.batch)
        return
    if args.ceiling or args.profile:
        if args.ceiling:
            ceiling_table(args.images, args.repeats, args.device, args.compile)
        if args.profile:
            profile_table(args.batch)
        return

    from cnnatlas.data import load_dataset

    data = load_dataset("synthetic", num_samples=args.images, image_size=(3, 32, 32), num_classes=10)
    device = torch.device(args.device)
    ours, refs = [], {w: [] for w in args.workers}
    for _ in range(args.repeats):
        ours.append(ours_images_per_s(args.model, args.images, args.batch, args.device))
        for w in args.workers:
            refs[w].append(
                reference_images_per_s(args.model, data.images, data.labels, args.batch, w, device, data.mean, data.std)
            )
    fmt = lambda xs: f"{statistics.mean(xs):8.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:6.1f}"  # noqa: E731
    print(
        f"# {args.model}, {args.images} synthetic 32×32 images, batch {args.batch}, {args.repeats} runs, "
        f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'pipeline':40s} {'images/s (mean ± std)':>24s} {'ours ÷ it':>10s}")
    print(f"{'cnnatlas trainer (batch aug on device)':40s} {fmt(ours):>24s} {'':>10s}")
    for w, xs in refs.items():
        label = f"DataLoader + per-sample transforms, {w} workers"
        print(f"{label:40s} {fmt(xs):>24s} {statistics.mean(ours) / statistics.mean(xs):9.2f}×")


if __name__ == "__main__":
    main()
