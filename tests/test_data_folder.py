"""Image folders (train/ and val/ class folders) read with PIL (docs/data.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnatlas.data import FolderDataset, dataset_splits, load_dataset
from cnnatlas.data.folder import IMAGENET_MEAN, IMAGENET_STD, IMG_EXTENSIONS, MAX_IMAGE_PIXELS
from cnnatlas.errors import DataError


def save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def make_tree(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    pixels = {
        "train/cat/a.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        "train/cat/sub/b.PNG": rng.integers(0, 256, (4, 4, 3), dtype=np.uint8),  # nested, upper-case ext
        "train/dog/c.png": rng.integers(0, 256, (6, 3), dtype=np.uint8),  # grayscale
        "val/dog/d.png": rng.integers(0, 256, (3, 3, 3), dtype=np.uint8),
    }
    for rel, array in pixels.items():
        save(root / rel, array)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    return pixels


def test_reads_classes_labels_and_exact_pixels(tmp_path: Path) -> None:
    pixels = make_tree(tmp_path)
    train = load_dataset("imagefolder", root=tmp_path)
    assert isinstance(train, FolderDataset) and train.split == "train"
    assert train.classes == ("cat", "dog") and train.num_classes == 2 and len(train) == 3
    assert train.targets == [0, 0, 1]
    image, label = train[0]
    assert label == 0 and image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert torch.equal(image, torch.from_numpy(pixels["train/cat/a.png"]).permute(2, 0, 1))
    gray, label = train[2]
    # Grayscale is converted to RGB by repeating the channel (PIL's "L" -> "RGB").
    assert label == 1 and gray.shape == (3, 6, 3)
    assert all(torch.equal(gray[c], torch.from_numpy(pixels["train/dog/c.png"])) for c in range(3))
    assert (train.mean, train.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_test_split_reads_val_with_the_training_class_indices(tmp_path: Path) -> None:
    make_tree(tmp_path)
    val = load_dataset("imagefolder", root=tmp_path, split="test")
    # val/ has only "dog", which must keep its train/ index 1, not become class 0.
    assert val.classes == ("cat", "dog") and val.targets == [1] and val[0][1] == 1
    assert dataset_splits("imagefolder", tmp_path) == ["train", "test"]


def test_transform_is_applied_per_sample_and_batches_stack(tmp_path: Path) -> None:
    make_tree(tmp_path)
    resize = lambda image: torch.nn.functional.interpolate(image[None].float(), size=(8, 8))[0]  # noqa: E731
    ds = load_dataset("imagefolder", root=tmp_path, transform=resize)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 0, 1]


def test_no_class_folders_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"train: no class folders found"):
        load_dataset("imagefolder", root=tmp_path)


def test_empty_class_folder_is_a_data_error_naming_it(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "train" / "emu").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) emu hold no image files"):
        load_dataset("imagefolder", root=tmp_path)


def test_missing_split_folder_and_unknown_val_class(tmp_path: Path) -> None:
    save(tmp_path / "train" / "cat" / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match=r"test split: folder .*val not found"):
        load_dataset("imagefolder", root=tmp_path, split="test")
    save(tmp_path / "val" / "yak" / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match=r"class folder\(s\) yak do not exist in .*train"):
        load_dataset("imagefolder", root=tmp_path, split="test")


@pytest.mark.parametrize("content", [b"definitely not a png", "truncated"])
def test_unreadable_image_is_a_data_error_naming_the_file(tmp_path: Path, content) -> None:
    make_tree(tmp_path)
    bad = tmp_path / "train" / "cat" / "a.png"
    if content == "truncated":
        content = bad.read_bytes()[:60]  # cut inside the pixel data (IDAT)
    bad.write_bytes(content)
    ds = load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataError, match=rf"{bad}: unreadable image"):
        ds[0]
    assert ds[2][0].shape == (3, 6, 3)  # the other files still load


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ds = load_dataset("imagefolder", root=tmp_path, max_pixels=20)  # a.png is 7×5 = 35 pixels
    with pytest.raises(
        DataError,
        match=r"a.png: image of 7×5 = 35 pixels exceeds the limit of 20 pixels \(a possible decompression bomb\)",
    ):
        ds[0]
    assert MAX_IMAGE_PIXELS == 8192 * 8192  # the documented default (docs/data.md)


def test_pils_decompression_bomb_warning_becomes_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    # PIL warns above Image.MAX_IMAGE_PIXELS and raises above twice that; lowering it makes a
    # 35-pixel file a "bomb" for PIL while staying under our own limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)
    ds = load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DataError, match="decompression bomb"):
        ds[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 35 > 2 × 10: PIL's error, not its warning
    with pytest.raises(DataError, match="decompression bomb"):
        ds[0]


def test_image_extensions_are_torchvisions() -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS

    assert IMG_EXTENSIONS == TORCHVISION_EXTENSIONS
