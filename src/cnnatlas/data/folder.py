"""Image folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` (ImageNet-style).

Discovery follows torchvision's ``ImageFolder`` (sorted class folders, files with an image
extension from ``torchvision.datasets.folder.IMG_EXTENSIONS``, symlinks followed, but each real
folder and file only once, so a link loop cannot hang the scan). Two
differences, both so that labels mean the same thing in both splits: the class list always
comes from ``train/`` when it exists (``val/`` may lack classes but may not add any), and every
problem is a :class:`~cnnatlas.errors.DataError` naming the folder or file.

Images are decoded with PIL and converted to RGB when a sample is read, so a loader with
workers decodes in parallel. Images larger than :data:`MAX_IMAGE_PIXELS` are refused *before*
decoding (a decompression bomb: a tiny file that expands to gigabytes of pixels).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from cnnatlas.data.core import normalize_split, require_root
from cnnatlas.errors import DataError
from cnnatlas.safeio import describe_kind, open_regular

#: Largest image accepted, in pixels: 8192×8192 = 67,108,864 (about 201 MB decoded as RGB).
#: ImageNet's largest training images are far below it; anything above is refused as a likely
#: decompression bomb. PIL's own limit (``Image.MAX_IMAGE_PIXELS``) still applies on top.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Largest image file read, in bytes (checked before reading): an uncompressed 8192×8192 RGBA
#: BMP or TIFF is 256 MiB; compressed formats are far smaller.
MAX_IMAGE_FILE_BYTES = 512 * 2**20

#: Per-channel mean and std used to normalise image folders: the ImageNet training-set
#: statistics that torchvision's ImageNet weights use (mean 0.485/0.456/0.406, std
#: 0.229/0.224/0.225). Computing them over an arbitrary folder would need a full decoding pass
#: before training; for natural photographs these constants are the accepted standard.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: File extensions read as images: torchvision 0.29's ``torchvision.datasets.folder.IMG_EXTENSIONS``
#: (copied rather than imported: importing torchvision.datasets costs over a second at start-up;
#: tests/test_data_folder.py checks the copy against torchvision).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: The sub-folder of ``root`` for each split.
SPLIT_FOLDERS = {"train": "train", "test": "val"}


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


def find_classes(folder: Path) -> list[str]:
    """Sorted names of the class sub-folders of ``folder`` (hidden ones skipped)."""
    try:
        entries = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
    if not entries:
        raise DataError(f"{folder}: no class folders found; expected {folder}/<class name>/<image files>")
    return entries


def _walk_images(class_dir: Path) -> list[str]:
    """Image files under ``class_dir`` at any depth, following symlinks, each real folder and
    each real file once (tracked by device and inode), so links that loop (``ln -s . l``) or
    reach the same folder twice neither hang the scan nor count images twice. An image name
    that is not a regular file (a FIFO, a device, a socket) is a DataError: opening it could block."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    files: list[str] = []
    pending = [class_dir]
    while pending:
        folder = pending.pop()
        try:
            info = folder.stat()
        except OSError:
            continue  # a dangling link
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                target = entry.stat()  # follows a symlink
            except OSError:
                continue  # a dangling link
            if stat.S_ISDIR(target.st_mode):
                pending.append(Path(entry.path))
            elif _is_image(Path(entry.name)):
                if not stat.S_ISREG(target.st_mode):
                    raise DataError(f"{entry.path}: is {describe_kind(target.st_mode)}, not a regular image file")
                if (target.st_dev, target.st_ino) not in seen_files:
                    seen_files.add((target.st_dev, target.st_ino))
                    files.append(entry.path)
    return sorted(files)


def make_samples(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    """``(path, label)`` of every image file under ``folder/<class>/`` (any depth, sorted)."""
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue  # a class of train/ that val/ does not have
        files = _walk_images(class_dir)
        if not files:
            empty.append(name)
        samples.extend((f, label) for f in files)
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"{folder}: class folder(s) {shown} hold no image files (extensions: {', '.join(IMG_EXTENSIONS)})"
        )
    return samples


def decode_image(path: str, *, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Decode an image file into a uint8 RGB tensor ``3×H×W``; any failure is a DataError."""
    try:
        with warnings.catch_warnings():
            # PIL warns (DecompressionBombWarning) above its limit and raises above twice it;
            # a warning would let the bomb through, so it becomes an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            handle, _ = open_regular(path, what="image file", max_bytes=MAX_IMAGE_FILE_BYTES)
            with handle, Image.open(handle) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: image of {width}×{height} = {width * height} pixels exceeds the limit of "
                        f"{max_pixels} pixels (a possible decompression bomb)"
                    )
                rgb = image.convert("RGB")
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: unreadable image (not an image format PIL recognises)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # PIL reports broken files as OSError ("image file is truncated") or SyntaxError (bad PNG chunks).
        raise DataError(f"{path}: unreadable image ({exc})") from None
    array = np.asarray(rgb, dtype=np.uint8)  # H×W×3
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class FolderDataset(torch.utils.data.Dataset):
    """An image-folder split: yields ``(uint8 3×H×W RGB tensor, int label)``.

    Images keep their own size unless ``transform`` (applied to each decoded tensor, e.g.
    ``cnnatlas.data.augment.folder_sample_transform``) makes them uniform so batches stack.
    """

    def __init__(
        self,
        root: str | os.PathLike | None,
        split: str = "train",
        *,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
        name: str = "imagefolder",
    ) -> None:
        self.name = name
        self.split = normalize_split(split)
        self.root = require_root(name, root)
        self.transform = transform
        self.max_pixels = int(max_pixels)
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        folder = self.root / SPLIT_FOLDERS[self.split]
        if not folder.is_dir():
            raise DataError(
                f"imagefolder {self.split} split: folder {folder} not found; expected "
                f"{self.root}/train/<class>/... and {self.root}/val/<class>/..."
            )
        train_folder = self.root / SPLIT_FOLDERS["train"]
        classes = find_classes(train_folder if train_folder.is_dir() else folder)
        if self.split == "test" and train_folder.is_dir():
            extra = sorted(set(find_classes(folder)) - set(classes))
            if extra:
                raise DataError(f"{folder}: class folder(s) {', '.join(extra[:5])} do not exist in {train_folder}")
        self.classes: tuple[str, ...] = tuple(classes)
        self.samples = make_samples(folder, classes)
        if not self.samples:
            raise DataError(f"{folder}: no image files found")
        self.targets = [label for _, label in self.samples]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = decode_image(path, max_pixels=self.max_pixels)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __repr__(self) -> str:
        return (
            f"FolderDataset(name={self.name!r}, split={self.split!r}, root={str(self.root)!r}, "
            f"n={len(self)}, num_classes={self.num_classes})"
        )


def folder_splits(root: str | os.PathLike | None) -> list[str]:
    folder = require_root("imagefolder", root)
    return [split for split, sub in SPLIT_FOLDERS.items() if (folder / sub).is_dir()]
