"""The registry's contract (register, list, create, model_info) and the `cnnatlas models` command."""

from __future__ import annotations

import json

import pytest
import torch

import cnnatlas
from cnnatlas.base import AtlasModel
from cnnatlas.cli import main
from cnnatlas.registry import ModelInfo, Paper, Variant, lookup, register_family, register_model

_PAPER = Paper("A. Author", "A test paper", 2000, "Nowhere")


class _Tiny(AtlasModel):
    min_input_size = 4

    def __init__(self, *, num_classes: int, in_chans: int, width: int = 3) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.conv = torch.nn.Conv2d(in_chans, width, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.pool(self.conv(x)).mean((2, 3))

    def forward_head(self, x):
        return self.fc(x)


def test_duplicate_registration_raises() -> None:
    info = ModelInfo("tiny_dup_test", "test", _PAPER, (1, 8, 8), "none", 2)
    register_model(info, _Tiny)
    with pytest.raises(ValueError, match="already registered"):
        register_model(info, _Tiny)


def test_register_family_fills_each_row_from_the_family_values() -> None:
    other = Paper("B. Author", "Another test paper", 2001, "Elsewhere")
    rows = (
        Variant("tiny_family_a", "first", {"width": 5}),
        Variant(
            "tiny_family_b",
            "second",
            input_size=(3, 16, 16),
            dataset="CIFAR-10",
            num_classes=4,
            recipe="lenet5",
            paper=other,
            torchvision_name="tiny",
        ),
    )
    register_family("test", _PAPER, _Tiny, rows, input_size=(1, 8, 8), dataset="none", num_classes=2, recipe="vgg")
    first, second = lookup("tiny_family_a"), lookup("tiny_family_b")
    assert first.info == ModelInfo(
        "tiny_family_a", "test", _PAPER, (1, 8, 8), "none", 2, "first", default_recipe="vgg", defaults={"width": 5}
    )
    assert second.info == ModelInfo(
        "tiny_family_b",
        "test",
        other,
        (3, 16, 16),
        "CIFAR-10",
        4,
        "second",
        torchvision_name="tiny",
        default_recipe="lenet5",
    )
    assert first.builder is _Tiny and cnnatlas.create_model("tiny_family_a").conv.out_channels == 5
    with pytest.raises(ValueError, match="'tiny_family_c' needs an input_size"):
        register_family("test", _PAPER, _Tiny, [Variant("tiny_family_c", "no data set")], input_size=(1, 8, 8))


def test_overrides_merge_and_unknown_options_are_input_errors() -> None:
    register_model(ModelInfo("tiny_opts_test", "test", _PAPER, (1, 8, 8), "none", 2, defaults={"width": 5}), _Tiny)
    model = cnnatlas.create_model("tiny_opts_test", num_classes=4, in_chans=3)
    assert (model.conv.out_channels, model.fc.out_features, model.in_chans) == (5, 4, 3)
    assert cnnatlas.create_model("tiny_opts_test", width=2).conv.out_channels == 2
    with pytest.raises(cnnatlas.InputError, match="does not accept colour"):
        cnnatlas.create_model("tiny_opts_test", colour=1)
    with pytest.raises(cnnatlas.InputError, match="num_classes must be a positive integer"):
        cnnatlas.create_model("tiny_opts_test", num_classes=0)


def test_too_small_input_names_the_collapsing_layer() -> None:
    register_model(ModelInfo("tiny_small_test", "test", _PAPER, (1, 8, 8), "none", 2), _Tiny)
    model = cnnatlas.create_model("tiny_small_test")
    with pytest.raises(
        cnnatlas.InputError,
        match=(
            r"tiny_small_test needs input at least 4×4 pixels, got 3×3: "
            r"layer pool \(MaxPool2d\) would collapse: it receives a 3×1×1 map"
        ),
    ):
        model(torch.randn(1, 1, 3, 3))


def test_unknown_model_suggests_close_names() -> None:
    register_model(ModelInfo("tiny_close_test", "test", _PAPER, (1, 8, 8), "none", 2), _Tiny)
    with pytest.raises(cnnatlas.InputError, match="did you mean tiny_close_test"):
        cnnatlas.create_model("tiny_close_tst")
    with pytest.raises(cnnatlas.InputError, match="did you mean resnet18"):
        cnnatlas.create_model("resnet_18")


def test_list_models_is_sorted_and_filtered() -> None:
    for name in ("tiny_list_b", "tiny_list_a", "tiny_other"):
        register_model(ModelInfo(name, "test", _PAPER, (1, 8, 8), "none", 2), _Tiny)
    names = cnnatlas.list_models()
    assert names == sorted(names) and {"tiny_list_a", "tiny_list_b", "tiny_other"} <= set(names)
    assert cnnatlas.list_models("tiny_list_*") == ["tiny_list_a", "tiny_list_b"]
    assert cnnatlas.list_models("tiny_list_?") == ["tiny_list_a", "tiny_list_b"]
    assert cnnatlas.list_models("TINY_*") == []  # case-sensitive, as model names are lower-case


def test_models_registered_inside_a_test_are_gone_after_it(registry_snapshot) -> None:
    before = cnnatlas.list_models()
    with registry_snapshot():
        register_model(ModelInfo("tiny_snapshot_test", "test", _PAPER, (1, 8, 8), "none", 2), _Tiny)
        assert "tiny_snapshot_test" in cnnatlas.list_models()
    assert cnnatlas.list_models() == before


def test_models_command_json(capsys) -> None:
    register_model(ModelInfo("tiny_cli_test", "test", _PAPER, (1, 8, 8), "none", 2), _Tiny)
    assert main(["models", "tiny_cli*", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "tiny_cli_test"
    assert rows[0]["params"] == 1 * 3 * 9 + 3 + 3 * 2 + 2
    assert rows[0]["input_size"] == [1, 8, 8]


def test_cli_errors_are_one_line_exit_2(capsys) -> None:
    assert main(["models", "no_such_model_*"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("cnnatlas: error:")
