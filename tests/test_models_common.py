"""Checks every registered model passes, parametrised over the registry: a model is tested the
day it is registered. Expected parameter counts live in the family test files, each with its
source."""

from __future__ import annotations

import inspect

import pytest
import torch

import cnnatlas
from cnnatlas.base import AtlasModel, smallest_working_input
from cnnatlas.errors import InputError
from cnnatlas.registry import create_meta_model

ALL_MODELS = cnnatlas.list_models()
# The very deep networks are checked on the meta device (shapes, counts), not with a full
# forward pass, to keep the suite inside the CI budget.
META_ONLY = {"resnet1202", "preact_resnet1001", "densenet264"}


# Each family's paper (first author, year of the version cited), as the papers' title pages print them.
PAPERS = {
    "lenet": ("LeCun et al.", 1998),  # Proc. IEEE 86(11)
    "alexnet": ("Krizhevsky", 2014),  # "One weird trick", arXiv:1404.5997 (torchvision's AlexNet)
    "alexnet_2012": ("Krizhevsky et al.", 2012),  # NIPS 2012
    "zfnet": ("Zeiler & Fergus", 2013),  # arXiv:1311.2901
    "vgg": ("Simonyan & Zisserman", 2014),  # arXiv:1409.1556
    "nin": ("Lin et al.", 2014),  # ICLR 2014, arXiv:1312.4400
    "googlenet": ("Szegedy et al.", 2014),  # arXiv:1409.4842
    "resnet": ("He et al.", 2015),  # arXiv:1512.03385
    "preact_resnet": ("He et al.", 2016),  # arXiv:1603.05027
    "stochastic_depth": ("Huang et al.", 2016),  # arXiv:1603.09382
    "wide_resnet": ("Zagoruyko & Komodakis", 2016),  # arXiv:1605.07146
    "resnext": ("Xie et al.", 2017),  # CVPR 2017, arXiv:1611.05431
    "fractalnet": ("Larsson et al.", 2017),  # ICLR 2017, arXiv:1605.07648
    "densenet": ("Huang et al.", 2017),  # CVPR 2017, arXiv:1608.06993
    "squeezenet": ("Iandola et al.", 2016),  # arXiv:1602.07360
    "mobilenet": ("Howard et al.", 2017),  # arXiv:1704.04861
    # the experiment nets cite the paper whose design choice each isolates (docs/experiments.md)
    "mini_vgg": ("Simonyan & Zisserman", 2014),
    "mini_inception": ("Szegedy et al.", 2014),
    "mini_mobilenet": ("Howard et al.", 2017),
}


def _default_input(info: cnnatlas.ModelInfo, batch: int = 1, device: str = "cpu") -> torch.Tensor:
    return torch.randn(batch, *info.input_size, device=device)


def _small_side(model: AtlasModel) -> int:
    """A cheap input side that still exercises every layer."""
    side = max(model.min_input_size, 32)
    return min(side, model.max_input_size) if model.max_input_size else side


@pytest.mark.parametrize("name", ALL_MODELS)
def test_meta_build_interface_and_info(name: str) -> None:
    info = cnnatlas.model_info(name)
    model = create_meta_model(name)
    assert isinstance(model, AtlasModel)
    assert model.num_classes == info.num_classes
    assert model.in_chans == info.input_size[0]
    assert (info.paper.short(), info.paper.year) == PAPERS.get(name, PAPERS.get(info.family)), name
    out = model.eval()(torch.empty(2, *info.input_size, device="meta"))
    assert tuple(model.main_logits(out).shape) == (2, info.num_classes)


# Constructor keywords that are not model options because the builder derives them from one that
# is: NiN's smallest input side follows from its stage table (``stages``).
DERIVED_CONSTRUCTOR_KEYWORDS = {"NiN": {"min_input_size"}}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_constructor_option_is_a_model_option(name: str) -> None:
    """docs/models/README.md: the options of create_model (``--model-option``) are the family
    constructor's, so every keyword of the built class must be accepted, with the same default."""
    builder = cnnatlas.lookup(name).builder
    cls = type(create_meta_model(name))
    constructor = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    accepted = inspect.signature(builder).parameters
    missing = set(constructor) - set(accepted) - DERIVED_CONSTRUCTOR_KEYWORDS.get(cls.__name__, set())
    assert not missing, f"{name}: {cls.__name__} takes {sorted(missing)}, which create_model rejects"
    for key, param in constructor.items():
        if key in accepted and inspect.Parameter.empty not in (param.default, accepted[key].default):
            assert accepted[key].default == param.default, f"{name}: {key} defaults differ"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_declared_min_input_size_is_the_true_minimum(name: str) -> None:
    info = cnnatlas.model_info(name)
    model = create_meta_model(name).eval()
    assert model.min_input_size == smallest_working_input(model, info.input_size[0])
    assert model.min_input_size <= info.input_size[1]


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n not in META_ONLY])
def test_forward_at_default_input_is_finite_and_deterministic(name: str) -> None:
    torch.manual_seed(0)
    info = cnnatlas.model_info(name)
    model = cnnatlas.create_model(name).eval()
    x = _default_input(info)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert first.shape == (1, info.num_classes)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n not in META_ONLY])
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = cnnatlas.create_model(name, num_classes=7).train()
    side = _small_side(model)
    target = torch.tensor([1, 5])
    # Stochastic depth and drop-path skip whole blocks in training, so allow a few steps for
    # every parameter to be reached at least once.
    for _ in range(8):
        out = model(torch.randn(2, model.in_chans, side, side))
        assert model.main_logits(out).shape == (2, 7)
        loss = model.training_loss(out, target)
        assert torch.isfinite(loss)
        loss.backward()
        if all(p.grad is not None for p in model.parameters() if p.requires_grad):
            break
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_bad_input_raises_input_error_naming_the_model(name: str) -> None:
    model = create_meta_model(name).eval()
    c = model.in_chans
    side = model.min_input_size
    with pytest.raises(InputError, match=name):
        model(torch.empty(c, side, side, device="meta"))  # no batch dimension
    with pytest.raises(InputError, match="channel"):
        model(torch.empty(1, c + 2, side, side, device="meta"))
    if side > 1:
        with pytest.raises(InputError, match=rf"{name} needs input .* got {side - 1}×{side - 1}: layer"):
            model(torch.empty(1, c, side - 1, side - 1, device="meta"))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_reset_classifier_changes_the_output_width_and_keeps_device_and_dtype(name: str) -> None:
    info = cnnatlas.model_info(name)
    model = create_meta_model(name).eval().to(torch.float64)
    model.reset_classifier(13)
    assert model.num_classes == 13
    wrong = [n for n, t in model.state_dict().items() if t.is_floating_point() and t.dtype != torch.float64]
    assert not wrong, f"float32 after reset_classifier: {wrong}"
    assert all(t.is_meta for t in model.state_dict().values())
    out = model(torch.empty(1, *info.input_size, device="meta", dtype=torch.float64))
    assert model.main_logits(out).shape == (1, 13) and model.main_logits(out).dtype == torch.float64
