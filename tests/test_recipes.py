"""Recipes: every model's default recipe exists, the papers' numbers are the papers', validation."""

from __future__ import annotations

import json
import math

import pytest

import cnnatlas
from cnnatlas.cli import main
from cnnatlas.errors import InputError
from cnnatlas.train.recipes import Recipe, get_recipe, list_recipes
from cnnatlas.train.trainer import LRSchedule

# The recipes docs/training.md documents.
EXPECTED = {
    "lenet5",
    "alexnet2012",
    "zfnet",
    "vgg",
    "nin_imagenet",
    "nin_cifar",
    "googlenet",
    "resnet_imagenet",
    "resnet_cifar",
    "resnet110_cifar",
    "preact_cifar",
    "wrn_cifar",
    "resnext_cifar",
    "stochastic_depth_cifar",
    "fractalnet_cifar",
    "densenet_imagenet",
    "densenet_cifar",
    "squeezenet",
    "mobilenet",
}


# Models trained with another paper's recipe: ResNeXt §5.1 "follows [He et al. 2015]", and the
# ImageNet wide ResNets are bottleneck ResNets trained the same way.
_RECIPE_FROM = {"Xie": "He", "Zagoruyko": "He"}


def test_every_named_recipe_is_defined_and_cites_the_paper_of_the_models_it_trains() -> None:
    assert EXPECTED <= set(list_recipes())
    for name in list_recipes():
        assert get_recipe(name).name == name
    used = set()
    for model in cnnatlas.list_models():
        info = cnnatlas.model_info(model)
        first_author = info.paper.authors.split(",")[0].split()[-1]
        recipe = get_recipe(info.default_recipe)
        used.add(recipe.name)
        if info.family == "mini":
            # The experiment nets are cnnatlas's own small networks (docs/experiments.md): they
            # train with the experiment recipe, which says whose settings it follows.
            assert recipe.name == "experiment" and recipe.source.startswith("cnnatlas experiments"), model
            continue
        cited = (first_author, _RECIPE_FROM.get(first_author, first_author))
        assert recipe.source.startswith(cited), (model, recipe.source)
    assert used <= set(list_recipes())


def test_every_registered_model_has_a_defined_default_recipe() -> None:
    for name in cnnatlas.list_models():
        info = cnnatlas.model_info(name)
        assert info.default_recipe is not None, f"{name} has no default recipe"
        get_recipe(info.default_recipe)  # raises InputError when missing


def test_resnet_cifar_is_he_2015_section_4_2() -> None:
    # He et al. 2015 §4.2: batch 128, lr 0.1, ÷10 at 32k and 48k iterations, stop at 64k, wd 1e-4.
    r = get_recipe("resnet_cifar")
    assert (r.batch_size, r.lr, r.iterations, r.milestones, r.gamma, r.weight_decay, r.momentum) == (
        128,
        0.1,
        64_000,
        (32_000, 48_000),
        0.1,
        1e-4,
        0.9,
    )
    assert r.augment == "pad_crop_flip"


def test_resnet110_warm_up_then_0_1_then_steps() -> None:
    # He et al. 2015 §4.2: ResNet-110 uses 0.01 for ~400 iterations, then 0.1; ÷10 at 32k, 48k.
    schedule = LRSchedule(get_recipe("resnet110_cifar"), steps_per_epoch=391, total_steps=64_000)
    assert schedule.lr_at(0) == 0.01 and schedule.lr_at(399) == 0.01
    assert schedule.lr_at(400) == 0.1 and schedule.lr_at(31_999) == 0.1
    assert math.isclose(schedule.lr_at(32_000), 0.01) and math.isclose(schedule.lr_at(48_000), 0.001)


def test_wrn_densenet_alexnet_googlenet_values() -> None:
    wrn = get_recipe("wrn_cifar")  # Zagoruyko & Komodakis 2016 §4
    assert (wrn.optimizer, wrn.epochs, wrn.milestones, wrn.gamma, wrn.weight_decay) == (
        "nesterov",
        200,
        (60, 120, 160),
        0.2,
        5e-4,
    )
    dense = get_recipe("densenet_cifar")  # Huang et al. 2017 §4.2: batch 64, 300 epochs, ÷10 at 50%/75%
    assert dense.batch_size == 64 and dense.epochs == 300
    assert dense.milestone_fractions(782) == (0.5, 0.75)
    alex = get_recipe("alexnet2012")  # Krizhevsky et al. 2012 §5
    assert (alex.batch_size, alex.lr, alex.momentum, alex.weight_decay, alex.schedule) == (
        128,
        0.01,
        0.9,
        5e-4,
        "plateau",
    )
    assert alex.test_protocol == "10crop"
    goog = get_recipe("googlenet")  # Szegedy et al. 2014 §6: lr decreased by 4% every 8 epochs
    schedule = LRSchedule(goog, steps_per_epoch=10, total_steps=10 * 250)
    assert math.isclose(schedule.lr_at(79), goog.lr) and math.isclose(schedule.lr_at(80), goog.lr * 0.96)


def test_epoch_override_rescales_an_iteration_schedule() -> None:
    short = get_recipe("resnet_cifar").with_overrides({"epochs": "10"})
    assert short.iterations is None and short.epochs == 10
    assert short.milestone_fractions(391) == (0.5, 0.75)  # the shape of the schedule is kept


def test_set_converts_strings_by_field_type() -> None:
    r = get_recipe("wrn_cifar").with_overrides({"weight_decay": "0", "milestones": "10,20", "dropout": "0.3"})
    assert r.weight_decay == 0.0 and r.milestones == (10.0, 20.0) and r.dropout == 0.3


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"lr": -0.1}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": "nan"}, "lr"),
        ({"schedule": "bogus"}, "schedule"),
        ({"not_a_field": 1}, "no field"),
        ({"logit_temperature": 0}, "logit_temperature"),
        ({"logit_temperature": "inf"}, "logit_temperature"),
    ],
)
def test_impossible_values_are_input_errors(overrides: dict, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        get_recipe("lenet5").with_overrides(overrides)


def test_unknown_recipe_suggests_close_names() -> None:
    with pytest.raises(InputError, match="resnet_cifar"):
        get_recipe("resnet_cifr")


def test_plateau_divides_after_patience() -> None:
    recipe = Recipe(
        name="p", source="test §0", dataset="synthetic", lr=1.0, schedule="plateau", plateau_patience=2, gamma=0.1
    )
    schedule = LRSchedule(recipe, steps_per_epoch=1, total_steps=10)
    for score in (0.5, 0.6, 0.6, 0.6):  # two epochs without improvement → ÷10
        schedule.epoch_end(score)
    assert math.isclose(schedule.lr_at(5), 0.1)


def test_round_trip_through_json() -> None:
    for name in list_recipes():
        recipe = get_recipe(name)
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_recipes_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(list_recipes())
    assert main(["recipes", "nope"]) == 2
    assert capsys.readouterr().err.startswith("cnnatlas: error: unknown recipe")


# Values each field must refuse: wrong type, non-finite, and out of range (the range of each field
# is in FIELD_RULES, train/recipes.py).
_BAD_VALUES: dict[str, list[object]] = {
    "name": [3, None],
    "source": [3, None],
    "dataset": [3, None],
    "optimizer": ["adam", 1],
    "lr": [0, -0.1, math.nan, math.inf, "0.1", True],
    "momentum": [1.0, -0.1, math.nan, "0.9"],
    "weight_decay": [-1e-4, math.nan, math.inf, 2.0],
    "batch_size": [0, -1, 2.5, "128", True, 2**40],
    "epochs": [0, -1, math.nan, math.inf, "1"],
    "iterations": [0, -5, 1.5, "100"],
    "schedule": ["step", None],
    "milestones": [(math.nan,), (math.inf,), (-1.0,), ("a",), [10.0]],
    "milestone_unit": ["step", None],
    "gamma": [0, 1.5, -0.1, math.nan],
    "decay_every_epochs": [0, -1, math.nan, math.inf],
    "plateau_patience": [0, -1, 1.5],
    "plateau_max_decays": [-5, 1.5, "3"],
    "warmup_lr": [0, -0.01, math.nan],
    "warmup_iterations": [-1, 1.5],
    "rmsprop_alpha": [-1, 1.0, math.nan],
    "rmsprop_eps": [-1, 0, math.nan, math.inf],
    "dropout": [1.0, -0.1, math.nan],
    "label_smoothing": [1.0, -0.1, math.nan],
    "logit_temperature": [0, -1, math.nan, math.inf],
    "grad_clip": [0, -1, math.nan, math.inf],
    "augment": ["mixup", None],
    "image_size": [0, -8, 10**6, 2.5, True],
    "test_protocol": ["144crop", None],
    "val_fraction": [1.0, -0.1, math.nan, "0.1"],
    "notes": [3, "x" * 20_000],
}


def test_every_recipe_field_has_a_rule_that_refuses_bad_values() -> None:
    from dataclasses import fields, replace

    from cnnatlas.train.recipes import FIELD_RULES

    names = [f.name for f in fields(Recipe)]
    assert sorted(FIELD_RULES) == sorted(names) == sorted(_BAD_VALUES)
    base = get_recipe("lenet5")
    for name in names:
        assert FIELD_RULES[name].accepts(getattr(base, name)), name
        for bad in _BAD_VALUES[name]:
            with pytest.raises(InputError, match=f"{name} must be"):
                replace(base, **{name: bad})


def test_a_recipe_from_a_config_is_checked_field_by_field() -> None:
    data = get_recipe("lenet5").to_dict()
    with pytest.raises(InputError, match="epochs must be"):
        Recipe.from_dict(dict(data, epochs="1"))
    with pytest.raises(InputError, match="missing field"):
        Recipe.from_dict({"lr": 0.1})
    assert Recipe.from_dict(data) == get_recipe("lenet5")
