"""The cluttered-digit task: deterministic per seed, held-out split built only from test digits,
options checked, and harder than the clean digits for a trained LeNet-5."""

from __future__ import annotations

import pytest
import torch

from cnnatlas.data import cluttered, load_dataset
from cnnatlas.data.idx import load_mnist_sample
from cnnatlas.errors import InputError


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = load_dataset("cluttered-mnist", split="test", seed=3)
    b = load_dataset("cluttered-mnist", split="test", seed=3)
    c = load_dataset("cluttered-mnist", split="test", seed=4)
    assert a.image_size == (1, 40, 40) and len(a) == 1000
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(a.labels, load_mnist_sample("test").labels)  # one image per bundled test digit


def test_the_first_n_training_images_do_not_depend_on_n() -> None:
    small = load_dataset("cluttered-mnist", train_size=300)
    large = load_dataset("cluttered-mnist", train_size=1500)
    assert len(small) == 300 and torch.equal(small.images, large.images[:300])
    assert small.mean == large.mean  # the same normalisation for every train_size
    assert load_dataset("cluttered-mnist-1k").images.shape[0] == 1000


def test_held_out_split_uses_only_test_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_dataset("cluttered-mnist", split="test", seed=7).images.clone()
    real = cluttered._source

    def blank_training_digits(split: str):  # noqa: ANN202
        data = real(split)
        if split == "train":
            data = type(data)(
                data.name, split, torch.zeros_like(data.images), data.labels, data.classes, data.mean, data.std
            )
        return data

    monkeypatch.setattr(cluttered, "_source", blank_training_digits)
    cluttered._generate_chunk.cache_clear()
    try:
        again = cluttered._generate("test", None, 40, 4, 7, 0.0)[0]
        assert torch.equal(again, reference)  # no stroke of a training digit reaches a test image
    finally:
        cluttered._generate_chunk.cache_clear()


def test_clean_canvas_reproduces_the_bundled_digits() -> None:
    # canvas 28, no clutter: the digit is placed exactly where it was (the identity transform)
    plain = load_dataset("cluttered-mnist", canvas=28, clutter=0, train_size=50)
    assert torch.equal(plain.images, load_mnist_sample("train").images[:50])


def test_digit_subsets_are_relabelled_in_order() -> None:
    subset = load_dataset("cluttered-mnist", split="test", digits="5-9")
    full = load_mnist_sample("test").labels
    assert subset.classes == ("5", "6", "7", "8", "9") and len(subset) == int((full >= 5).sum())
    assert torch.equal(subset.labels, full[full >= 5] - 5)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"canvas": 20}, "canvas must be an integer"),
        ({"clutter": -1}, "clutter must be"),
        ({"digits": "9-5"}, "runs backwards"),
        ({"digits": "1,1"}, "at most once"),
        ({"scale_jitter": 1.5}, "scale_jitter must be"),
        ({"canvas": 28, "scale_jitter": 0.3}, "cannot hold"),
        ({"colour": 1}, "does not take option"),
    ],
)
def test_bad_options_are_input_errors(options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_dataset("cluttered-mnist", split="test", **options)


@pytest.mark.slow
def test_a_trained_lenet5_scores_clearly_lower_on_the_cluttered_task(tmp_path) -> None:  # noqa: ANN001
    from cnnatlas.train.trainer import train

    common = dict(
        epochs=2, batch_size=32, device="cpu", limit_train=2000, recipe="lenet5", overrides={"augment": "none"}
    )
    clean = train("lenet5", data="mnist-sample", out=str(tmp_path / "clean"), **common).final["test_top1"]
    hard = train("lenet5", data="cluttered-mnist", out=str(tmp_path / "hard"), **common).final["test_top1"]
    assert clean > 0.8 and hard < clean - 0.2  # it learned the clean digits (86 % after 2 short epochs)
