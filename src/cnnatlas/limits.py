"""Documented upper bounds on every size a user can ask for, checked before anything is built.

Each bound is far above any network or data set in the papers cnnatlas follows and far below
what would exhaust memory or time before an error could be raised (docs/security.md).
"""

from __future__ import annotations

#: Classes of a classifier: ImageNet-21k has 21,841; the bound leaves room for any real label set.
MAX_NUM_CLASSES = 100_000
#: Input channels of a network (RGB 3, grey 1, multispectral tens).
MAX_IN_CHANS = 1024
#: Side of an input image in pixels (the image-folder reader refuses more than 8192×8192 pixels).
MAX_IMAGE_SIDE = 8192
#: Images in one batch.
MAX_BATCH_SIZE = 1 << 20
#: DataLoader worker processes.
MAX_WORKERS = 256


def available_memory_bytes(device: str = "cpu") -> int | None:
    """Memory a new allocation can use on ``device`` now: free GPU memory for CUDA, Linux's
    ``MemAvailable`` for the CPU; None where it cannot be told."""
    if device.startswith("cuda"):
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError):
            return None
        return int(free)
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
