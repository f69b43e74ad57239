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
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

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


def ours_images_per_s(model_name: str, n: int, batch: int, device: str) -> float:
    from cnnatlas.train.trainer import train

    with tempfile.TemporaryDirectory() as out:
        result = train(
            model_name,
            out=f"{out}/run",
            data="synthetic",
            recipe="resnet_cifar",
            epochs=1,
            batch_size=batch,
            device=device,
            limit_test=batch,
            data_options={"num_samples": n, "image_size": (3, 32, 32), "num_classes": 10},
        )
    return float(result.metrics[-1]["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

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
