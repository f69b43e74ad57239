"""Hostile and mistaken input, case by case: every one ends in exit 2 with one line
``cnnatlas: error: …``, no traceback, and no file changed outside the run folder.

The crafted files come from make_corpus.py (next to this file); the command line runs in-process
through ``cnnatlas.cli.main`` so the whole suite stays within seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from cnnatlas.cli import main
from cnnatlas.train import checkpoint as ck
from cnnatlas.train.trainer import train

_spec = importlib.util.spec_from_file_location("make_corpus", Path(__file__).with_name("make_corpus.py"))
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]

TINY = ["--limit-train", "64", "--limit-test", "32", "--batch-size", "32", "--epochs", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run with one checkpoint (so a broken one has nothing to fall back to)."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    train("lenet5_modern", out=str(out), limit_train=64, limit_test=32, batch_size=32, epochs=1, device="cpu")
    return out


@dataclass
class Ctx:
    tmp: Path
    finished: Path
    run_folder: Path | None = None  # the one folder a case may write into

    def out(self) -> str:
        self.run_folder = self.tmp / "out"
        return str(self.run_folder)

    def run_copy(self) -> Path:
        self.run_folder = self.tmp / "runcopy"
        shutil.copytree(self.finished, self.run_folder)
        return self.run_folder

    def marker(self) -> Path:
        return ck.list_checkpoints(self.run_folder)[-1]

    def files(self, name: str) -> Path:
        return corpus.FILE_CASES[name](self.tmp / name)


def _train(ctx: Ctx, *extra: str) -> list[str]:
    return ["train", "lenet5_modern", "--quiet", *TINY, "--out", ctx.out(), *extra]


def _data(ctx: Ctx, data: str, name: str, *extra: str) -> list[str]:
    return _train(ctx, "--data", data, "--root", str(ctx.files(name)), "--workers", "0", *extra)


def _resume(ctx: Ctx) -> list[str]:
    return ["train", "lenet5_modern", "--quiet", "--resume", str(ctx.run_folder), "--epochs", "2"]


def _tamper_state(edit: Callable[[dict], None]) -> Callable[[Ctx], list[str]]:
    def case(ctx: Ctx) -> list[str]:
        ctx.run_copy()
        corpus.rewrite_state(ctx.marker(), edit)
        return _resume(ctx)

    return case


def _tamper_config(edit: Callable[[dict], None], command: str = "evaluate") -> Callable[[Ctx], list[str]]:
    def case(ctx: Ctx) -> list[str]:
        run = ctx.run_copy()
        corpus.rewrite_json(run / "config.json", edit)
        if command == "predict":
            image = ctx.tmp / "digit.png"
            image.write_bytes(corpus.png_bytes())
            return ["predict", str(run), str(image)]
        return _resume(ctx) if command == "resume" else ["evaluate", str(run)]

    return case


def _replace_tensor_file(make: Callable[[Path], bytes]) -> Callable[[Ctx], list[str]]:
    """Swap the model tensor file and update its recorded size and hash (a careful forger)."""

    def case(ctx: Ctx) -> list[str]:
        ctx.run_copy()
        marker = ctx.marker()
        path = marker.with_name(marker.name.replace(".json", ".model.safetensors"))
        data = make(path)
        path.write_bytes(data)

        def edit(state: dict) -> None:
            state["sha256"]["model"] = hashlib.sha256(data).hexdigest()
            state["bytes"]["model"] = len(data)

        corpus.rewrite_state(marker, edit)
        return ["evaluate", str(ctx.run_folder)]

    return case


def _fifo_state(ctx: Ctx) -> list[str]:
    marker = ctx.run_copy() and ctx.marker()
    marker.unlink()
    os.mkfifo(marker)
    return ["evaluate", str(ctx.run_folder)]


def _predict_special(kind: str) -> Callable[[Ctx], list[str]]:
    def case(ctx: Ctx) -> list[str]:
        target = {"dev_zero": "/dev/zero", "folder": str(ctx.tmp)}.get(kind)
        if kind == "fifo":
            target = str(ctx.tmp / "pipe.png")
            os.mkfifo(target)
        return ["predict", str(ctx.finished), str(target)]

    return case


def _out_at_file(ctx: Ctx, below: str) -> list[str]:
    blocker = ctx.tmp / "a-file"
    blocker.write_text("mine")
    return ["train", "lenet5_modern", "--quiet", *TINY, "--out", str(blocker / below if below else blocker)]


def _del(key: str) -> Callable[[dict], None]:
    return lambda d: d.pop(key)


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return edit


# (case id) → (argv builder, text the one error line must contain)
CASES: dict[str, tuple[Callable[[Ctx], list[str]], str]] = {
    # crafted IDX files
    "idx_sparse_huge": (lambda c: _data(c, "mnist", "idx_sparse_huge"), "300.0 MiB, more than"),
    "idx_header_lies": (lambda c: _data(c, "mnist", "idx_header_lies"), "file is truncated"),
    "idx_bad_magic": (lambda c: _data(c, "mnist", "idx_bad_magic"), "not an IDX file"),
    "idx_fifo": (lambda c: _data(c, "mnist", "idx_fifo"), "FIFO"),
    # crafted CIFAR batches (checksums off, as for a re-packed copy)
    **{
        name: (lambda c, n=name: _data(c, "cifar10", n, "--data-option", "verify_checksums=false"), needle)
        for name, needle in {
            "cifar_billion_laughs": "expands beyond",
            "cifar_tuple_key": "tuple key",
            "cifar_huge_label": "label 1180591620717411303424 at index 0 is outside",
            "cifar_absurd_shape": "data_batch_1: pickled array has an invalid shape",
            "cifar_code_execution": "refused to unpickle global",
            "cifar_fifo": "FIFO",
        }.items()
    },
    "cifar_checksum_hint": (
        lambda c: _data(c, "cifar10", "cifar_tuple_key"),
        "--data-option verify_checksums=false",
    ),
    # image folders and images
    "folder_link_loop_and_fifo": (lambda c: _data(c, "imagefolder", "folder_link_loop_and_fifo"), "FIFO"),
    "predict_truncated_png": (
        lambda c: ["predict", str(c.finished), str(c.files("truncated_png"))],
        "unreadable image",
    ),
    "predict_fifo": (_predict_special("fifo"), "FIFO"),
    "predict_folder": (_predict_special("folder"), "is a folder"),
    "predict_dev_zero": (_predict_special("dev_zero"), "a device"),
    # checkpoint states that name other files, or are not files
    "state_names_dev_zero": (_tamper_state(_set("files.model", "/dev/zero")), "plain names"),
    "state_names_other_run": (
        _tamper_state(_set("files.model", "/elsewhere/checkpoints/step-000000002.model.safetensors")),
        "plain names",
    ),
    "state_is_fifo": (_fifo_state, "FIFO"),
    "state_edited_without_hash": (
        lambda c: (
            c.run_copy(),
            c.marker().write_text(c.marker().read_text().replace('"epoch": 1', '"epoch": 5')),
            _resume(c),
        )[-1],
        "integrity hash",
    ),
    # tampered state values (hash recomputed)
    "state_epoch_text": (_tamper_state(_set("epoch", "x")), "field epoch must be"),
    "state_no_schedule": (_tamper_state(_del("schedule")), "field schedule is missing"),
    "state_bad_rng": (_tamper_state(_set("rng.torch_cpu", "!!not base64!!")), "not valid base64"),
    "state_broken_param_groups": (_tamper_state(_set("optimizer_meta.param_groups", [{"lr": 1}])), "parameter"),
    "state_huge_step": (_tamper_state(_set("global_step", 10**30)), "field global_step"),
    # tensor files
    "tensor_int8_in_place_of_float": (
        _replace_tensor_file(lambda p: corpus.safetensors_with_dtype(p, "output.weight", "int8")),
        "dtype mismatches",
    ),
    "tensor_garbage_header": (_replace_tensor_file(lambda p: corpus.safetensors_header_garbage()), "cannot be read"),
    # tampered config.json
    "config_model_is_text": (_tamper_config(_set("model", "lenet5")), "field model must be a JSON object"),
    "config_no_data": (_tamper_config(_del("data")), "field data is missing"),
    "config_epochs_text": (_tamper_config(_set("recipe.epochs", "1"), "resume"), "epochs must be"),
    "config_seed_text": (_tamper_config(_set("seed", "abc"), "resume"), "field seed must be"),
    "config_huge_image": (_tamper_config(_set("data.image_size", [1, 200000, 200000]), "predict"), "image_size"),
    "config_huge_classes": (
        _tamper_config(_set("model.options.num_classes", 10**8)),
        "num_classes must be a positive integer of at most",
    ),
    # options
    "workers_negative": (lambda c: _train(c, "--workers", "-1"), "--workers must be"),
    "milestones_nan": (lambda c: _train(c, "--set", "milestones=nan"), "milestones must be"),
    "milestones_inf": (lambda c: _train(c, "--set", "milestones=inf"), "milestones must be"),
    "milestones_words": (lambda c: _train(c, "--set", "milestones=a,b"), "a list of at most 1000 finite numbers"),
    "decay_every_nan": (lambda c: _train(c, "--set", "decay_every_epochs=nan"), "decay_every_epochs must be"),
    "rmsprop_alpha_negative": (lambda c: _train(c, "--set", "rmsprop_alpha=-1"), "rmsprop_alpha must be"),
    "rmsprop_eps_negative": (lambda c: _train(c, "--set", "rmsprop_eps=-1"), "rmsprop_eps must be"),
    "weight_decay_nan": (lambda c: _train(c, "--set", "weight_decay=nan"), "weight_decay must be"),
    "weight_decay_inf": (lambda c: _train(c, "--set", "weight_decay=inf"), "weight_decay must be"),
    "image_size_zero": (lambda c: _train(c, "--set", "image_size=0"), "image_size must be"),
    "image_size_negative": (lambda c: _train(c, "--set", "image_size=-8"), "image_size must be"),
    "plateau_max_decays_negative": (lambda c: _train(c, "--set", "plateau_max_decays=-5"), "plateau_max_decays"),
    "epochs_nan": (lambda c: _train(c, "--epochs", "nan"), "--epochs must be"),
    "checkpoint_minutes_negative": (lambda c: _train(c, "--checkpoint-every-minutes", "-1"), "minutes"),
    "synthetic_seed_text": (
        lambda c: _train(c, "--data", "synthetic", "--data-option", 'seed="abc"'),
        "seed must be an integer",
    ),
    "synthetic_seed_23_digits": (
        lambda c: _train(c, "--data", "synthetic", "--data-option", "seed=12345678901234567890123"),
        "seed must be an integer",
    ),
    "synthetic_classes_bool": (
        lambda c: _train(c, "--data", "synthetic", "--data-option", "num_classes=true"),
        "num_classes must be a positive integer",
    ),
    "synthetic_too_big": (
        lambda c: _train(
            c, "--data", "synthetic", "--data-option", "num_samples=1000000", "--data-option", "image_size=3x1024x1024"
        ),
        "two splits together",
    ),
    "model_classes_huge": (
        lambda c: _train(c, "--model-option", "num_classes=100000000000"),
        "num_classes must be a positive integer of at most",
    ),
    "model_option_impossible_value": (
        lambda c: (
            ["train", "mobilenet_v1_025", "--quiet", "--data", "synthetic", "--out", c.out()]
            + ["--model-option", "dropout=-3"]
        ),
        "mobilenet_v1_025 cannot be built with dropout=-3",
    ),
    "summary_classes_huge": (lambda c: ["summary", "lenet5", "--num-classes", "100000000"], "at most 100,000"),
    "summary_measure_beyond_memory": (
        lambda c: ["summary", "alexnet", "--input", "3x4096x4096", "--batch", "100000", "--measure"],
        "exceeds the",
    ),
    "evaluate_device_meta": (lambda c: ["evaluate", str(c.finished), "--device", "meta"], "unknown device 'meta'"),
    "evaluate_device_mps": (lambda c: ["evaluate", str(c.finished), "--device", "mps"], "unknown device 'mps'"),
    "model_name_case": (lambda c: ["summary", "VGG16X"], "did you mean vgg16"),
    # output paths
    "out_is_file": (lambda c: _out_at_file(c, ""), "is a file, not a folder"),
    "out_under_file": (lambda c: _out_at_file(c, "run"), "a part of the path is a file"),
    "out_in_proc": (lambda c: ["train", "lenet5_modern", "--quiet", *TINY, "--out", "/proc/cnnatlas-run"], "cannot"),
    "out_in_sys": (lambda c: ["train", "lenet5_modern", "--quiet", *TINY, "--out", "/sys/cnnatlas-run"], "cannot"),
    "out_name_too_long": (
        lambda c: ["train", "lenet5_modern", "--quiet", *TINY, "--out", str(c.tmp / ("x" * 300))],
        "name is too long",
    ),
}


def _snapshot(root: Path, skip: Path | None) -> dict[str, str]:
    """Content hash of every regular file under ``root`` (others by kind; never opened)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if skip is None or Path(dirpath) / d != skip]
        for name in filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else oct(mode)
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_error_line(
    case: str, tmp_path: Path, finished: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would appear here
    make, needle = CASES[case]
    ctx = Ctx(tmp_path, finished)
    argv = make(ctx)
    before = (_snapshot(tmp_path, ctx.run_folder), _snapshot(finished, None))
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cnnatlas: error: "), err
    assert "Traceback" not in err and needle in lines[0], err
    assert (_snapshot(tmp_path, ctx.run_folder), _snapshot(finished, None)) == before
    assert not Path("/tmp/cnnatlas-pwned").exists()


def test_a_full_disk_is_one_line_and_loses_nothing(
    tmp_path: Path, finished: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ulimit -f``: every write above the limit fails with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = {p.name: p.read_bytes() for p in (run / ck.CHECKPOINT_DIR).iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # the model file is ~250 KB
    try:
        code = main(["train", "lenet5_modern", "--quiet", "--resume", str(run), "--epochs", "2"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "the file size limit was reached" in lines[0], err
    for name, data in before.items():  # the committed checkpoint is intact and still loads
        assert (run / ck.CHECKPOINT_DIR / name).read_bytes() == data
    assert ck.load_latest_checkpoint(run).state["global_step"] == 2
    assert not [p for p in (run / ck.CHECKPOINT_DIR).iterdir() if p.name.startswith(".tmp-")]


def test_a_link_loop_is_scanned_once(tmp_path: Path) -> None:
    from cnnatlas.data.folder import FolderDataset

    root = corpus.image_folder(tmp_path)
    cat = root / "train" / "cat"
    for name in ("l1", "l2", "l3"):
        (cat / name).symlink_to(".")
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "same.png").symlink_to(cat / "good.png")
    (root / "train" / "dog" / "own.png").write_bytes(corpus.png_bytes())
    dataset = FolderDataset(root, "train")
    # cat/good.png once (not again through l1, l2, l3), then dog's two
    assert [(Path(p).name, label) for p, label in dataset.samples] == [("good.png", 0), ("own.png", 1), ("same.png", 1)]


def test_a_worker_error_is_our_one_line(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from cnnatlas.data.core import iterate_loader
    from cnnatlas.data.folder import FolderDataset
    from cnnatlas.errors import DataError

    root = corpus.image_folder(tmp_path)
    (root / "train" / "cat" / "zz-broken.png").write_bytes(corpus.png_bytes()[:40])
    loader = DataLoader(FolderDataset(root, "train"), batch_size=1, num_workers=2)
    with pytest.raises(DataError) as caught:
        list(iterate_loader(loader))
    message = str(caught.value)
    assert "\n" not in message and message.endswith(")") and "zz-broken.png: unreadable image" in message


def test_evaluate_json_has_null_for_nan(
    finished: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnatlas.train.evaluate as ev

    original = ev.ensemble_evaluate

    def nan_loss(*args: object, **kwargs: object) -> dict:
        result = original(*args, **kwargs)
        result["loss"] = float("nan")
        return result

    monkeypatch.setattr(ev, "ensemble_evaluate", nan_loss)
    assert main(["evaluate", str(finished), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)  # strict JSON: NaN would not parse back as null
    assert result["loss"] is None and "nan" in result["null_because"]["loss"]
    assert 0 <= result["top1"] <= 1


def test_rbf_centres_follow_the_walsh_rule_and_the_class_bound_comes_first() -> None:
    from cnnatlas.errors import InputError
    from cnnatlas.models.lenet import DIGIT_BITMAPS, rbf_prototypes
    from cnnatlas.registry import create_model

    codes = rbf_prototypes(40, 84)
    assert codes.shape == (40, 84) and set(codes.unique().tolist()) == {-1.0, 1.0}
    first = [1.0 if ch == "#" else -1.0 for row in DIGIT_BITMAPS[0] for ch in row]
    assert codes[0].tolist() == first  # LeCun et al. 1998 Fig. 3 bitmaps for the digits
    for cls in (10, 17, 39):  # Walsh row cls+1: (−1)^popcount((cls+1) & j)
        assert codes[cls].tolist() == [-1.0 if bin((cls + 1) & j).count("1") % 2 else 1.0 for j in range(84)]
    with pytest.raises(InputError, match="at most 100,000"):
        create_model("lenet5", num_classes=10**8)
    assert torch.equal(create_model("lenet5", num_classes=12).output.weight[:10], codes[:10][:, :84])
