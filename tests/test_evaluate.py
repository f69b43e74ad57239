"""Evaluation: metrics against a direct computation, the test-time protocols' views (AlexNet
§4.1 10-crop, VGG §3.2 multi-scale), ensembles, and the `evaluate`/`predict` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.base import AtlasModel
from cnnatlas.data.core import ArrayDataset
from cnnatlas.errors import InputError
from cnnatlas.train.adapt import InputAdapter
from cnnatlas.train.evaluate import EnsembleMember, ensemble_evaluate, evaluate, predict_probabilities


class TinyNet(AtlasModel):
    """conv → ReLU → global average pool → linear: takes any input size, like the papers'
    networks with adaptive pooling. ``symmetric`` makes it exactly mirror-invariant by
    averaging the features of the image and its mirror."""

    def __init__(self, *, num_classes: int = 7, in_chans: int = 3, symmetric: bool = False) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans)
        self.min_input_size = 4
        self.symmetric = symmetric
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1, padding_mode="replicate")  # flat stays flat
        self.fc = nn.Linear(8, num_classes)
        self.seen: list[tuple[int, ...]] = []

    def forward_features(self, x: Tensor) -> Tensor:
        self.seen.append(tuple(x.shape))
        feats = F.relu(self.conv(x))
        if self.symmetric:
            feats = (feats + F.relu(self.conv(x.flip(-1))).flip(-1)) / 2
        return feats.mean(dim=(2, 3))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(8, num_classes)


def _dataset(
    n: int = 50, num_classes: int = 7, side: int = 16, chans: int = 3, seed: int = 0, constant: bool = False
) -> ArrayDataset:
    gen = torch.Generator().manual_seed(seed)
    if constant:  # every image one flat colour: all crops, mirrors and scales look the same
        colours = torch.randint(0, 256, (n, chans, 1, 1), generator=gen, dtype=torch.uint8)
        images = colours.expand(n, chans, side, side).contiguous()
    else:
        images = torch.randint(0, 256, (n, chans, side, side), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return ArrayDataset(
        "synthetic",
        "test",
        images,
        labels,
        tuple(f"c{i}" for i in range(num_classes)),
        (0.5,) * chans,
        (0.25,) * chans,
    )


def _adapter(chans: int = 3) -> InputAdapter:
    return InputAdapter(in_chans=chans, out_chans=chans, mean=(0.5,) * chans, std=(0.25,) * chans)


def _model(seed: int = 0, **kwargs) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs).eval()


def test_metrics_match_a_direct_computation() -> None:
    data, model, adapter = _dataset(), _model(), _adapter()
    result = evaluate(model, data, adapter=adapter, batch_size=16)  # 50 = 3·16 + 2: a ragged last batch
    with torch.no_grad():
        logits = model(adapter(data.images))
    top5 = logits.topk(5, dim=1).indices
    assert result["n"] == 50
    assert result["top1"] == pytest.approx(float((top5[:, 0] == data.labels).float().mean()))
    assert result["top5"] == pytest.approx(float((top5 == data.labels[:, None]).any(1).float().mean()))
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, data.labels)), rel=1e-5)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert set(result) == {"top1", "top5", "loss", "n"}


def test_topk_is_capped_at_the_number_of_classes() -> None:
    # Three classes: "top-5" means top-3, which always contains the label (documented rule).
    result = evaluate(_model(num_classes=3), _dataset(num_classes=3), adapter=_adapter())
    assert result["top5"] == 1.0
    assert result["top1"] < 1.0


@pytest.mark.parametrize("tta", ["flip", "10crop", "multiscale"])
def test_protocols_agree_on_views_that_all_look_alike(tta: str) -> None:
    # Flat-colour images: every crop, mirror and rescale is the same image, so every protocol
    # must give the single-view numbers.
    data, model, adapter = _dataset(constant=True), _model(), _adapter()
    plain = evaluate(model, data, adapter=adapter)
    other = evaluate(model, data, adapter=adapter, tta=tta)
    assert other["top1"] == plain["top1"] and other["top5"] == plain["top5"] and other["n"] == plain["n"]
    assert other["loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_flip_protocol_equals_plain_on_a_mirror_invariant_model() -> None:
    data, adapter = _dataset(), _adapter()
    model = _model(symmetric=True)
    plain = evaluate(model, data, adapter=adapter)
    flipped = evaluate(model, data, adapter=adapter, tta="flip")
    assert flipped["top1"] == plain["top1"]
    assert flipped["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    # …and differs on a model that is not mirror-invariant, so the test can fail.
    asym = _model()
    assert evaluate(asym, data, adapter=adapter, tta="flip")["loss"] != pytest.approx(
        evaluate(asym, data, adapter=adapter)["loss"], rel=1e-6
    )


def test_flip_loss_is_nll_of_the_averaged_softmax() -> None:
    data, model, adapter = _dataset(), _model(), _adapter()
    result = evaluate(model, data, adapter=adapter, tta="flip")
    x = adapter(data.images)
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert result["loss"] == pytest.approx(float(F.nll_loss(probs.log(), data.labels)), rel=1e-5)
    assert result["top1"] == pytest.approx(float((probs.argmax(1) == data.labels).float().mean()))


def test_ten_crop_views_are_corners_centre_and_mirrors() -> None:
    # Krizhevsky et al. 2012 §4.1: four corner patches, the centre patch and their reflections;
    # for a 32-pixel image the crop side is 28 (7/8, our documented choice).
    data, adapter = _dataset(n=2, side=32), _adapter()
    model = _model()
    views: list[Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: views.append(args[0].clone()))
    evaluate(model, data, adapter=adapter, tta="10crop")
    assert len(views) == 10 and all(v.shape == (2, 3, 28, 28) for v in views)
    x = adapter(data.images)
    expected = [x[..., :28, :28], x[..., :28, 4:], x[..., 4:, :28], x[..., 4:, 4:], x[..., 2:30, 2:30]]
    expected += [e.flip(-1) for e in expected]
    for got, want in zip(views, expected):
        assert torch.equal(got, want)


def test_ten_crop_resizes_back_for_a_fixed_size_network() -> None:
    model = _model()
    model.min_input_size = model.max_input_size = 16  # like LeNet-5's fixed 32×32
    data, adapter = _dataset(n=2, side=16), _adapter()
    evaluate(model, data, adapter=adapter, tta="10crop")
    assert model.seen == [(2, 3, 16, 16)] * 10
    with pytest.raises(InputError, match="fixed input size"):
        evaluate(model, data, adapter=adapter, tta="multiscale")


def test_multiscale_uses_three_scales_and_mirrors() -> None:
    # VGG §3.2: Q = {S−32, S, S+32} at S = 256, i.e. {7S/8, S, 9S/8}; with S = 32: 28, 32, 36.
    model = _model()
    evaluate(model, _dataset(n=2, side=32), adapter=_adapter(), tta="multiscale")
    assert sorted({s[-1] for s in model.seen}) == [28, 32, 36]
    assert len(model.seen) == 6


def test_centre_crop_at_the_paper_side_for_larger_images() -> None:
    model = _model()
    model.model_name = "vgg11"  # a registered network whose paper input is 224 (Simonyan & Zisserman §2.1)
    evaluate(model, _dataset(n=1, side=256), adapter=_adapter())
    assert model.seen == [(1, 3, 224, 224)]
    model.seen.clear()
    evaluate(model, _dataset(n=1, side=256), adapter=_adapter(), tta="10crop")
    assert model.seen == [(1, 3, 224, 224)] * 10


def test_ensemble_of_a_run_with_itself_equals_the_run() -> None:
    data, model, adapter = _dataset(), _model(), _adapter()
    single = evaluate(model, data, adapter=adapter)
    double = ensemble_evaluate([(model, adapter), EnsembleMember(model, adapter)], data)
    assert double["top1"] == single["top1"] and double["top5"] == single["top5"] and double["n"] == single["n"]
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-6)


def test_ensemble_averages_softmax_outputs() -> None:
    data, adapter = _dataset(), _adapter()
    first, second = _model(seed=1), _model(seed=2)
    result = ensemble_evaluate([(first, adapter), (second, adapter)], data, batch_size=7)
    with torch.no_grad():
        x = adapter(data.images)
        probs = (first(x).softmax(1) + second(x).softmax(1)) / 2
    assert result["loss"] == pytest.approx(float(F.nll_loss(probs.log(), data.labels)), rel=1e-5)
    assert result["top1"] == pytest.approx(float((probs.argmax(1) == data.labels).float().mean()))


def test_bad_arguments_are_input_errors() -> None:
    data, model, adapter = _dataset(), _model(), _adapter()
    with pytest.raises(InputError, match="test-time protocol"):
        evaluate(model, data, adapter=adapter, tta="5crop")
    with pytest.raises(InputError, match="batch size"):
        evaluate(model, data, adapter=adapter, batch_size=0)
    with pytest.raises(InputError, match="disagree"):
        ensemble_evaluate([(model, adapter), (_model(num_classes=3), adapter)], data)


def test_predict_probabilities_sum_to_one() -> None:
    probs = predict_probabilities(_model(), _adapter(), _dataset(n=4).images, tta="10crop")
    assert probs.shape == (4, 7)
    assert torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)


# -- the commands ------------------------------------------------------------------------------
@pytest.fixture()
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run directory as the trainer writes it (config.json + a committed checkpoint) for a
    tiny test-only network on the bundled-style synthetic data set."""
    from cnnatlas import registry
    from cnnatlas.train.checkpoint import save_checkpoint

    info = registry.ModelInfo(
        name="evaltest_tinynet",
        family="test",
        paper=registry.Paper("test", "test", 2024, "test"),
        input_size=(3, 16, 16),
        dataset="synthetic",
        num_classes=7,
    )
    registry._ensure_models_imported()
    # Registered for this test only (monkeypatch removes it), so registry-wide tests never see it.
    monkeypatch.setitem(registry._REGISTRY, info.name, (info, lambda **kw: TinyNet(**kw)))
    model = _model()
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "model": {"name": info.name, "options": {"num_classes": 7, "in_chans": 3}},
        "data": {
            "name": "synthetic",
            "root": None,
            "options": {"num_samples": 40, "image_size": [3, 16, 16], "num_classes": 7, "seed": 3},
            "classes": [f"c{i}" for i in range(7)],
        },
        "adapter": _adapter().to_dict(),
    }
    (run / "config.json").write_text(json.dumps(config))
    save_checkpoint(
        run,
        step=1,
        model_state=model.state_dict(),
        optimizer_state={"state": {}, "param_groups": []},
        state={"model_name": info.name},
    )
    return run


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from cnnatlas.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_command_prints_the_json_contract(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "evaluate", str(run_dir), "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert {"top1", "top5", "loss", "n"} <= set(result)
    assert result["n"] == 40 and 0 <= result["top1"] <= result["top5"] <= 1
    code, out2, _ = _cli(capsys, "evaluate", str(run_dir), "--ensemble", str(run_dir), "--format", "json")
    assert code == 0 and json.loads(out2)["top1"] == result["top1"]


def test_predict_command_lists_topk(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.new("RGB", (20, 30), (200, 10, 10)).save(image)
    code, out, err = _cli(capsys, "predict", str(run_dir), str(image), "--topk", "3", "--format", "json")
    assert code == 0, err
    (item,) = json.loads(out)
    probs = [p["probability"] for p in item["predictions"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    assert all(p["class"].startswith("c") for p in item["predictions"])


def _one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("cnnatlas: error:") and err.count("\n") == 1 and fragment in err


def test_command_errors_are_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(*_cli(capsys, "evaluate", str(tmp_path / "absent")), "does not exist")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    _one_line_error(*_cli(capsys, "evaluate", str(empty)), "no checkpoint")
    _one_line_error(*_cli(capsys, "predict", str(empty), "x.png"), "no checkpoint")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    _one_line_error(*_cli(capsys, "predict", str(run_dir), str(broken)), "unreadable image")
    _one_line_error(*_cli(capsys, "predict", str(run_dir), str(tmp_path / "nope.png")), "does not exist")
    _one_line_error(*_cli(capsys, "evaluate", str(run_dir), "--batch-size", "0"), "batch-size")


@pytest.mark.parametrize("workers", [0, 2])
def test_image_folder_matches_the_same_images_in_memory(tmp_path: Path, workers: int) -> None:
    # Images of different sizes are decoded at 8/7 of the crop side (18 for 16, as 256 for 224)
    # and centre-cropped; the result must equal evaluating those very tensors as an array.
    from PIL import Image

    from cnnatlas.data import FolderDataset
    from cnnatlas.data.augment import folder_sample_transform

    gen = torch.Generator().manual_seed(5)
    for split in ("train", "val"):
        for label, name in enumerate(("cat", "dog", "owl")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                h, w = 20 + 3 * i, 24 + 5 * label
                pixels = torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    folder_data = FolderDataset(tmp_path, "test")
    transform = folder_sample_transform(False, 18)
    images = torch.stack([transform(folder_data[i][0]) for i in range(len(folder_data))])
    labels = torch.tensor([folder_data[i][1] for i in range(len(folder_data))])
    array_data = ArrayDataset("copy", "test", images, labels, folder_data.classes, folder_data.mean, folder_data.std)
    model, adapter = _model(num_classes=3), _adapter()
    from_folder = evaluate(model, folder_data, adapter=adapter, crop_size=16, batch_size=4, num_workers=workers)
    assert model.seen[0][-2:] == (16, 16)
    assert from_folder == evaluate(model, array_data, adapter=adapter, crop_size=16, batch_size=4)
    assert from_folder["n"] == 9 and folder_data.transform is None  # the caller's data set is untouched


def test_wrapped_models_are_evaluated_like_the_model_itself() -> None:
    # The trainer may hand in a torch.compile / DDP wrapper; metadata and main_logits come from
    # the network inside. A stand-in wrapper with `.module`, as DistributedDataParallel has:
    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: Tensor) -> Tensor:
            return self.module(x)

    data, model, adapter = _dataset(), _model(), _adapter()
    assert evaluate(Wrapper(model), data, adapter=adapter) == evaluate(model, data, adapter=adapter)


def test_fast_inference_copy_gives_the_eager_figures(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "evaluate", str(run_dir), "--format", "json")
    assert code == 0, err
    fast = json.loads(out)
    code, out, err = _cli(capsys, "evaluate", str(run_dir), "--no-fast", "--format", "json")
    assert code == 0, err
    eager = json.loads(out)
    assert (fast["inference"], eager["inference"]) == ("fast (fp32)", "eager")
    assert fast["top1"] == eager["top1"] and fast["top5"] == eager["top5"]
    assert fast["loss"] == pytest.approx(eager["loss"], rel=1e-4)
