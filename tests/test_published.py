"""The published-results table (cnnatlas.published) and how `compare` shows it."""

from __future__ import annotations

import json

import pytest

import cnnatlas
from cnnatlas.cli import main
from cnnatlas.published import ILSVRC_ENTRIES, RESULTS, PublishedResult, select, torchvision_results


def test_every_result_belongs_to_a_registered_model_and_reaches_model_info() -> None:
    registered = set(cnnatlas.list_models())
    assert set(RESULTS) <= registered
    assert {e.model for e in ILSVRC_ENTRIES} <= registered
    info = cnnatlas.model_info("densenet121")
    assert set(RESULTS["densenet121"]) <= set(info.results)


def test_competition_entries_are_test_set_ensembles_with_the_notes_numbers() -> None:
    # Krizhevsky et al. 2012 Table 2 (5 CNNs 16.4, 7 CNNs* 15.3), ILSVRC 2013 Clarifai 11.7
    # (Russakovsky et al. 2015), Simonyan & Zisserman Table 7 (7.3), Szegedy et al. Table 2
    # (6.67), He et al. Table 5 (3.57): top-5 test error.
    by_year = {(e.year, e.result.error) for e in ILSVRC_ENTRIES}
    assert by_year == {(2012, 16.4), (2012, 15.3), (2013, 11.7), (2014, 7.3), (2014, 6.67), (2015, 3.57)}
    for entry in ILSVRC_ENTRIES:
        assert entry.result.split == "test" and entry.result.metric == "top-5"
        assert not entry.result.single_model  # ensembles, never mixed with single-model figures
        assert entry.result.source
    # none of them appears among the single-model results
    single = {(r.split, r.error) for rs in RESULTS.values() for r in rs}
    assert not any(("test", e.result.error) in single for e in ILSVRC_ENTRIES)


def test_values_are_stored_as_error_and_accuracy_is_converted() -> None:
    # Iandola et al. 2016 Table 3 prints 57.5 % top-1 accuracy for SqueezeNet v1.0.
    top1 = next(r for r in RESULTS["squeezenet1_0"] if r.metric == "top-1")
    assert top1.error == 42.5 and top1.accuracy == 57.5
    with pytest.raises(ValueError):
        PublishedResult("ImageNet-1k", "val", "top-1 accuracy", 57.5, "Table 3")
    with pytest.raises(ValueError):
        PublishedResult("ImageNet-1k", "val", "top-1", 157.5, "Table 3")


def test_torchvision_metadata_is_read_not_typed() -> None:
    # torchvision 0.29 weights metadata: resnet50 IMAGENET1K_V1 acc@1 76.13, acc@5 92.862.
    rows = torchvision_results("resnet50")
    assert [(r.metric, r.accuracy, r.protocol, r.split) for r in rows] == [
        ("top-1", 76.13, "1 crop", "val"),
        ("top-5", 92.862, "1 crop", "val"),
    ]
    assert all(r.reference.startswith("torchvision") for r in rows)
    assert torchvision_results(None) == ()


def test_select_prefers_the_protocol_then_the_paper() -> None:
    densenet = cnnatlas.model_info("densenet121").results
    # Huang et al. 2017 Table 3 gives a single-crop 25.02: the paper beats torchvision's 1-crop figure.
    chosen = select(densenet, "top-1", "ImageNet-1k")
    assert (chosen.error, chosen.protocol, chosen.from_paper) == (25.02, "1 crop", True)
    assert select(densenet, "top-1", "ImageNet-1k", "10 crops").error == 23.61
    # AlexNet (2012) is only published at 10 crops: that figure comes back, flagged by protocol.
    alex = select(cnnatlas.model_info("alexnet_2012").results, "top-1", "ImageNet-1k")
    assert (alex.error, alex.protocol) == (40.7, "10 crops")
    # CIFAR: the whole test image is the single view.
    assert select(cnnatlas.model_info("resnet20").results, "top-1", "CIFAR-10").error == 8.75


def test_compare_has_one_column_per_metric_and_footnotes_other_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "alexnet_2012", "densenet121", "--format", "json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["densenet121"]["top1"]["error"] == 25.02 and not rows["densenet121"]["top1"]["other_protocol"]
    assert rows["alexnet_2012"]["top5"]["other_protocol"] and rows["alexnet_2012"]["top5"]["error"] == 18.2
    assert main(["compare", "alexnet_2012", "densenet121", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| top-1 error % | top-5 error % |" in out
    assert "| 40.7* | 18.2* |" in out and "| 25.02 | 7.71 |" in out
    assert "* alexnet_2012 top-1: 10 crops" in out and "densenet121 top-1:" not in out
    assert main(["compare", "densenet121", "--protocol", "10 crops", "--format", "markdown"]) == 0
    assert "| 23.61 | 6.66 |" in capsys.readouterr().out
