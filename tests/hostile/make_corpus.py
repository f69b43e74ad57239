"""Generate the hostile-input corpus: crafted IDX, CIFAR, image, safetensors and JSON files.

Every file is built here from a few lines of code rather than committed as a blob, so what each
one attacks can be read off its generator. ``python tests/hostile/make_corpus.py DEST`` writes
the corpus to DEST; tests/hostile/test_hostile.py builds it in a temporary folder.

Nothing here runs a pickle: the CIFAR payloads are pickled (written), never unpickled, and the
code-execution payload names ``os.system`` without calling it.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- IDX ----------------------------------------------------------------------------------------
def idx_header(magic: int, shape: tuple[int, ...]) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in shape)


def mnist_folder(dest: Path, *, images: bytes | None = None, labels: bytes | None = None) -> Path:
    """A --root for `--data mnist`: valid 2-digit train files unless replaced."""
    dest.mkdir(parents=True, exist_ok=True)
    good_images = idx_header(IMAGES_MAGIC, (2, 28, 28)) + bytes(2 * 28 * 28)
    good_labels = idx_header(LABELS_MAGIC, (2,)) + bytes([3, 7])
    (dest / "train-images-idx3-ubyte").write_bytes(images if images is not None else good_images)
    (dest / "train-labels-idx1-ubyte").write_bytes(labels if labels is not None else good_labels)
    return dest


def idx_sparse_huge(dest: Path) -> Path:
    """A 300 MiB sparse image file whose header says 60,000 digits: no disk used, refused by size."""
    root = mnist_folder(dest)
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(idx_header(IMAGES_MAGIC, (60000, 28, 28)))
    os.truncate(path, 300 * 2**20)
    return root


def idx_header_lies(dest: Path) -> Path:
    """A 1 KiB file whose header promises 4 billion digits."""
    return mnist_folder(dest, images=idx_header(IMAGES_MAGIC, (2**32 - 1, 28, 28)) + bytes(1000))


def idx_bad_magic(dest: Path) -> Path:
    return mnist_folder(dest, images=b"\x7fELF" + bytes(100))


def idx_fifo(dest: Path) -> Path:
    root = mnist_folder(dest)
    (root / "train-images-idx3-ubyte").unlink()
    os.mkfifo(root / "train-images-idx3-ubyte")
    return root


# -- CIFAR --------------------------------------------------------------------------------------
class _Reduce:
    """Pickles as ``func(*args)`` with ``state``, without anything being called while pickling."""

    def __init__(self, func: Callable[..., Any], args: tuple, state: Any = None) -> None:
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self) -> tuple:
        return self.value


def _absurd_array() -> _Reduce:
    """numpy's own pickle form of an array, but with shape (2**70, 0)."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct, by reference
    return _Reduce(reconstruct, (np.ndarray, (0,), b"b"), (1, (2**70, 0), np.dtype("uint8"), False, b""))


def _batch(n: int = 2) -> dict[str, Any]:
    return {"data": np.zeros((n, 3072), dtype=np.uint8), "labels": [1] * n, "batch_label": "crafted"}


def cifar_folder(dest: Path, first_batch: Any, protocol: int = 2) -> Path:
    """A --root for `--data cifar10` whose data_batch_1 is ``first_batch`` (the rest valid, tiny)."""
    folder = dest / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}, protocol=2))
    for name in CIFAR_TRAIN[1:] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_batch(), protocol=2))
    data = first_batch if isinstance(first_batch, bytes) else pickle.dumps(first_batch, protocol=protocol)
    (folder / CIFAR_TRAIN[0]).write_bytes(data)
    return dest


def cifar_billion_laughs(dest: Path) -> Path:
    """Under 1 KiB on disk: seven levels of lists, each repeating the level below 30 times (7·10^8 leaves)."""
    level: Any = [b"x" * 16]
    for _ in range(6):
        level = [level] * 30
    return cifar_folder(dest, {"data": level, "labels": []})


def cifar_tuple_key(dest: Path) -> Path:
    return cifar_folder(dest, {("data", 1): 1, "labels": []})


def cifar_huge_label(dest: Path) -> Path:
    return cifar_folder(dest, dict(_batch(1), labels=[2**70]))


def cifar_absurd_shape(dest: Path) -> Path:
    return cifar_folder(dest, {"data": _absurd_array(), "labels": []}, protocol=4)  # protocol 4: raw empty bytes


def cifar_code_execution(dest: Path) -> Path:
    return cifar_folder(dest, _Reduce(os.system, ("echo pwned > /tmp/cnnatlas-pwned",)))


def cifar_fifo(dest: Path) -> Path:
    root = cifar_folder(dest, _batch())
    batch = root / "cifar-10-batches-py" / CIFAR_TRAIN[0]
    batch.unlink()
    os.mkfifo(batch)
    return root


# -- images -------------------------------------------------------------------------------------
def png_bytes(side: int = 8) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(dest: Path) -> Path:
    """train/ and val/ with one class of one good PNG each."""
    for split in ("train", "val"):
        (dest / split / "cat").mkdir(parents=True, exist_ok=True)
        (dest / split / "cat" / "good.png").write_bytes(png_bytes())
    return dest


def folder_link_loop_and_fifo(dest: Path) -> Path:
    """``ln -s . l1; ln -s . l2`` (exponential without a visited set) plus a FIFO named x.png."""
    root = image_folder(dest)
    cat = root / "train" / "cat"
    (cat / "l1").symlink_to(".")
    (cat / "l2").symlink_to(".")
    os.mkfifo(cat / "x.png")
    return root


def truncated_png(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "broken.png"
    path.write_bytes(png_bytes()[:40])
    return path


# -- safetensors --------------------------------------------------------------------------------
def safetensors_header_garbage() -> bytes:
    """A header length of 2**40 followed by junk."""
    return struct.pack("<Q", 2**40) + b"{junk"


def safetensors_with_dtype(reference: Path, key: str, dtype: str) -> bytes:
    """``reference`` (a safetensors file) with tensor ``key`` stored as ``dtype`` (e.g. int8)."""
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(str(reference))
    tensors[key] = tensors[key].to(getattr(torch, dtype))
    return save(tensors)


# -- JSON (checkpoint states and config.json of a real run) --------------------------------------
def rewrite_state(marker: Path, edit: Callable[[dict], None]) -> None:
    """Edit a checkpoint state and recompute its integrity hash, as a careful forger would."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from cnnatlas.train.checkpoint import _state_digest

    state = json.loads(marker.read_text())
    edit(state)
    state["state_sha256"] = _state_digest(state)
    marker.write_text(json.dumps(state))


def rewrite_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


#: The file-based corpus: name → generator writing under the given folder.
FILE_CASES: dict[str, Callable[[Path], Path]] = {
    "idx_sparse_huge": idx_sparse_huge,
    "idx_header_lies": idx_header_lies,
    "idx_bad_magic": idx_bad_magic,
    "idx_fifo": idx_fifo,
    "cifar_billion_laughs": cifar_billion_laughs,
    "cifar_tuple_key": cifar_tuple_key,
    "cifar_huge_label": cifar_huge_label,
    "cifar_absurd_shape": cifar_absurd_shape,
    "cifar_code_execution": cifar_code_execution,
    "cifar_fifo": cifar_fifo,
    "folder_link_loop_and_fifo": folder_link_loop_and_fifo,
    "truncated_png": truncated_png,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_corpus.py DEST", file=sys.stderr)
        return 2
    dest = Path(argv[0])
    for name, make in FILE_CASES.items():
        print(name, make(dest / name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
