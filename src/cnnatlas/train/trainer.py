"""The training loop: ``train(model_name, **options) -> RunResult``.

Read top to bottom: options → run directory and recipe → data and model → optimiser and
schedule → the loop (batches by index from the device-resident data set, batch augmentation on
the device, one optimiser step) → per-epoch evaluation, metrics and checkpoint.

Randomness, and why resume is exact. Three sources of randomness exist, each derived from the
run's seed so that any step can be replayed without the history before it:

* data order — epoch ``e`` permutes the training set with a CPU generator seeded by
  ``(seed, e)``; every rank draws the same permutation and takes its own shard;
* augmentation — a generator on the training device, reseeded before step ``s`` of rank ``r``
  by ``(seed, r, s)``;
* the model's own randomness (dropout, stochastic depth, drop-path) — torch's default
  generators, reseeded the same way before each step.

A checkpoint records the epoch, the next step within it, the running sums of the epoch's train
metrics, the schedule's state and the generator states; resuming rebuilds the epoch's
permutation, skips the batches already taken and continues: no batch is skipped or repeated,
and with ``deterministic=True`` on the CPU the parameters end bit-identical to an uninterrupted run.

Library code returns data and never prints: progress goes to an optional ``callback(event,
payload)`` (the command layer draws the progress bar with it).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import math
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnatlas.data.augment import SIZE_KEEPING_AUGMENTS, build_train_augment
from cnnatlas.data.validation import CARVE_RULE
from cnnatlas.errors import CheckpointError, CnnAtlasError, InputError
from cnnatlas.limits import MAX_WORKERS
from cnnatlas.schema import MAX_COUNT, OBJECT, Rule, check_fields, int_rule, is_number
from cnnatlas.train import distributed as D
from cnnatlas.train.adapt import InputAdapter
from cnnatlas.train.checkpoint import (
    atomic_write_json,
    clean_stale_temporaries,
    decode_bytes_tensor,
    encode_bytes_tensor,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)
from cnnatlas.train.lock import LOCK_FILE, RunLock, lock_run_dir
from cnnatlas.train.recipes import Recipe, get_recipe
from cnnatlas.train.run import (
    CONFIG_FILE,
    DIAGNOSTIC_FILE,
    SEED_RULE,
    draw_curves,
    read_config,
    read_metrics,
    write_config,
    write_metrics,
)

Callback = Callable[[str, Mapping[str, Any]], None]
EVAL_BATCH = 512
_SEED_STRIDE = 1_000_003  # a prime: (seed, rank, step) → distinct 63-bit seeds
#: A checkpoint is also taken when this many minutes passed since the last one (mid-epoch), so
#: a kill never costs more than this much training, even on a data set whose epoch takes hours.
DEFAULT_CHECKPOINT_MINUTES = 10.0
#: Test-only fault injection: when set to N, the process SIGKILLs itself right after global step
#: N (and after the checkpoint of that step, if one is due). The kill-and-resume tests and
#: benchmarks/kill_resume.py use it to kill at an exact step; never set it for real training.
FAULT_KILL_ENV = "CNNATLAS_FAULT_KILL_AT_STEP"


#: What ``train_loss``, ``val_loss`` and ``test_loss`` in metrics.jsonl measure (also written to
#: config.json): the same quantity on every split, so the curves compare. The optimised loss,
#: which may add a logit temperature, label smoothing or auxiliary heads, is ``train_objective``.
LOSS_DEFINITION = (
    "mean cross-entropy of the main classifier's softmax at temperature 1, no label smoothing, no auxiliary "
    "heads: on the augmented training batches in train mode (train_loss) and on the held-out images in eval "
    "mode (val_loss, test_loss); train_objective is the loss the optimiser minimised"
)


def _new_sums() -> list[float]:
    """An epoch's running sums: cross-entropy·n, correct top-1s, n, objective·n."""
    return [0.0, 0.0, 0.0, 0.0]


class NonFiniteLossError(CnnAtlasError):
    """Training produced a NaN/inf loss; the run stopped and kept its last good checkpoint."""


@dataclass
class TrainOptions:
    """Everything ``train`` accepts besides the model name. ``None`` means "the recipe's value"."""

    data: str | None = None
    root: str | None = None
    out: str | None = None
    recipe: str | None = None
    epochs: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    val_fraction: float | None = None  # share of the training split held out for validation
    overrides: dict[str, Any] = field(default_factory=dict)  # any recipe field (--set)
    seed: int = 0
    val_seed: int = 0  # seeds the validation carve only: the same held-out images for every run seed
    device: str = "auto"
    amp: bool = False
    channels_last: bool = True  # NHWC: faster convolutions with oneDNN on CPU and on GPUs
    compile: bool = False
    deterministic: bool = False
    resume: str | None = None
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = None  # None: DEFAULT_CHECKPOINT_MINUTES; 0: off
    limit_train: int | None = None
    limit_test: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 4
    keep_checkpoints: int = 2
    init_from: str | None = None  # run dir or weight file: copy tensors matching by name and shape
    init_exclude: str | None = None  # comma-separated fnmatch patterns init_from leaves alone
    freeze: str | None = None  # comma-separated fnmatch patterns of parameters not to train


@dataclass
class RunResult:
    """What a finished run returns (rank 0 has the metrics; other ranks the same final step)."""

    run_dir: Path
    model: str
    recipe: str
    epochs: int
    global_step: int
    metrics: list[dict[str, Any]]
    wall_time_s: float
    adapter_rule: str

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}

    def summary(self) -> str:
        last = self.final
        parts = [f"{self.model} ({self.recipe}): {self.epochs} epochs, {self.global_step} steps"]
        if last.get("val_top1") is not None:
            parts.append(f"validation top-1 {100 * last['val_top1']:.2f}%")
        if last.get("test_top1") is not None:
            parts.append(f"test top-1 {100 * last['test_top1']:.2f}%, top-5 {100 * last['test_top5']:.2f}%")
        if last.get("train_loss") is not None:
            parts.append(f"train loss {last['train_loss']:.4f}")
        parts.append(f"{self.wall_time_s:.1f} s")
        return ", ".join(parts) + f" → {self.run_dir}"


# -- learning-rate schedule --------------------------------------------------------------------
class LRSchedule:
    """The recipe's learning rate as a function of the global step (plus plateau state)."""

    def __init__(self, recipe: Recipe, steps_per_epoch: int, total_steps: int) -> None:
        self.recipe = recipe
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.boundaries = [round(f * total_steps) for f in recipe.milestone_fractions(steps_per_epoch)]
        self.plateau_scale, self.best, self.bad_epochs, self.decays = 1.0, None, 0, 0

    def lr_at(self, step: int) -> float:
        r = self.recipe
        if r.warmup_lr is not None and step < r.warmup_iterations:
            return float(r.warmup_lr)
        if r.schedule == "multistep":
            return r.lr * r.gamma ** sum(step >= b for b in self.boundaries)
        if r.schedule == "exponential":
            return r.lr * r.gamma ** math.floor(step / self.steps_per_epoch / r.decay_every_epochs)
        if r.schedule == "linear":
            return r.lr * max(0.0, 1.0 - step / self.total_steps)
        if r.schedule == "cosine":
            return r.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        if r.schedule == "plateau":
            return r.lr * self.plateau_scale
        return r.lr

    def epoch_end(self, score: float | None) -> None:
        """Plateau: divide by 1/gamma after ``plateau_patience`` epochs without a better ``score``."""
        if self.recipe.schedule != "plateau" or score is None:
            return
        if self.best is None or score > self.best + 1e-12:
            self.best, self.bad_epochs = score, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.recipe.plateau_patience and self.decays < self.recipe.plateau_max_decays:
            self.plateau_scale *= self.recipe.gamma
            self.decays += 1
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau_scale": self.plateau_scale,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "decays": self.decays,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self.decays = int(state["decays"])


# -- small helpers -----------------------------------------------------------------------------
def _derived_seed(seed: int, *parts: int) -> int:
    value = seed
    for part in parts:
        value = (value * _SEED_STRIDE + part + 1) % (2**63 - 1)
    return value


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> Tensor:
    """The data order of ``epoch`` (the same on every rank and after every resume)."""
    generator = torch.Generator().manual_seed(_derived_seed(seed, 0, epoch))
    return torch.randperm(num_samples, generator=generator)


def _builder_accepts(model_name: str, keyword: str) -> bool:
    from cnnatlas.registry import lookup

    params = inspect.signature(lookup(model_name).builder).parameters
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@contextmanager
def _restored_global_state() -> Iterator[None]:
    """Put back the process-wide torch settings a run changes (deterministic kernels, cuDNN
    autotuning, the cuBLAS workspace variable, the default CPU/CUDA generators it reseeds every
    step), so that calling :func:`train` leaves the caller's process as it found it."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    cublas_workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if cublas_workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas_workspace
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _versions() -> dict[str, str]:
    import cnnatlas

    return {"cnnatlas": cnnatlas.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _rng_state(device: torch.device, aug_generator: torch.Generator) -> dict[str, Any]:
    state = {
        "torch_cpu": encode_bytes_tensor(torch.get_rng_state()),
        "augment": encode_bytes_tensor(aug_generator.get_state()),
    }
    if device.type == "cuda":
        state["torch_cuda"] = encode_bytes_tensor(torch.cuda.get_rng_state(device))
    return state


def _restore_rng_state(state: Mapping[str, Any], device: torch.device, aug_generator: torch.Generator) -> None:
    torch.set_rng_state(decode_bytes_tensor(state["torch_cpu"]))
    aug_generator.set_state(decode_bytes_tensor(state["augment"]))
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(decode_bytes_tensor(state["torch_cuda"]), device)


# -- setup -------------------------------------------------------------------------------------
def _resolve_recipe(model_name: str, opts: TrainOptions) -> Recipe:
    from cnnatlas.registry import model_info

    info = model_info(model_name)  # InputError for an unknown model, with suggestions
    name = opts.recipe or info.default_recipe
    if name is None:
        raise InputError(f"{model_name} has no default recipe; pass --recipe NAME (see `cnnatlas recipes`)")
    recipe = get_recipe(name)
    overrides = dict(opts.overrides)
    for key in ("epochs", "batch_size", "lr", "val_fraction"):
        value = getattr(opts, key)
        if value is not None:
            overrides[key] = value
    return recipe.with_overrides(overrides)


def _validate(opts: TrainOptions) -> None:
    """Every option's type and range, before anything is read or written."""
    for key in ("limit_train", "limit_test", "checkpoint_every_steps"):
        value = getattr(opts, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT):
            raise InputError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")
    minutes = opts.checkpoint_every_minutes
    if minutes is not None and not is_number(minutes, 0, 10**6):
        raise InputError(f"--checkpoint-every-minutes must be a number of minutes ≥ 0 (0: off), got {minutes!r}")
    workers = opts.num_workers
    if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers must be an integer from 0 to {MAX_WORKERS}, got {workers!r}")
    if not isinstance(opts.keep_checkpoints, int) or opts.keep_checkpoints < 1:
        raise InputError("keep_checkpoints must be at least 1")
    if not isinstance(opts.seed, int) or isinstance(opts.seed, bool) or not -(2**63) <= opts.seed < 2**63:
        raise InputError(f"--seed must be an integer of at most 63 bits, got {opts.seed!r}")
    if opts.epochs is not None and not (is_number(opts.epochs, 0, 1e6) and opts.epochs > 0):
        raise InputError(f"--epochs must be a positive number, got {opts.epochs!r}")
    for flag, options in (("--data-option", opts.data_options), ("--model-option", opts.model_options)):
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise InputError(f"{flag} values must be a mapping of names to values")


def _fault_kill_step() -> int | None:
    """The step of :data:`FAULT_KILL_ENV` (test-only), or None."""
    text = os.environ.get(FAULT_KILL_ENV)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{FAULT_KILL_ENV} must be a step number, got {text!r}") from None


def _check_out_dir(run_dir: Path) -> None:
    """Refuse an output folder that is a file, holds a run already, or holds anything else;
    writes nothing (a folder holding only an abandoned lock file counts as empty)."""
    try:
        if run_dir.is_symlink() or run_dir.exists():
            if not run_dir.is_dir():
                raise InputError(f"--out {str(run_dir)!r} is a file, not a folder; choose a new folder name")
            names = [e.name for e in os.scandir(run_dir)]
        else:
            return
    except OSError as exc:
        from cnnatlas.safeio import describe_write_error

        raise InputError(describe_write_error(run_dir, exc)) from None
    if CONFIG_FILE in names or list_checkpoints(run_dir):
        raise InputError(
            f"{str(run_dir)!r} already holds a run; pass --resume {run_dir} to continue it, or another --out"
        )
    others = [n for n in names if n != LOCK_FILE]
    if others:
        shown = ", ".join(sorted(others)[:3]) + (" …" if len(others) > 3 else "")
        raise InputError(
            f"--out {str(run_dir)!r} is a folder that is not empty and not a cnnatlas run (holds {shown}); "
            "choose a new or empty folder"
        )


def _make_run_dir(run_dir: Path) -> RunLock:
    """Create ``run_dir`` (with parents) and take its lock; check again under the lock that it is empty."""
    from cnnatlas.safeio import describe_write_error

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(describe_write_error(run_dir, exc)) from None
    lock = lock_run_dir(run_dir)
    try:
        _check_out_dir(run_dir)  # another process may have started a run here meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


#: The fields of a checkpoint state the trainer uses, with their types and ranges.
_STATE_RULES: dict[str, Rule] = {
    "epoch": int_rule(0, MAX_COUNT),
    "step_in_epoch": int_rule(0, MAX_COUNT),
    "steps_per_epoch": int_rule(1, MAX_COUNT),
    "epoch_sums": Rule(
        lambda v: isinstance(v, list) and len(v) == len(_new_sums()) and all(is_number(x) for x in v),
        f"the epoch's {len(_new_sums())} running sums (see _new_sums), finite numbers",
    ),
    "schedule": OBJECT,
    "rng": OBJECT,
}
_SCHEDULE_RULES: dict[str, Rule] = {
    "plateau_scale": Rule(lambda v: is_number(v, 0, 1), "a finite number in [0, 1]"),
    "best": Rule(lambda v: v is None or is_number(v), "a finite number or null"),
    "bad_epochs": int_rule(0, MAX_COUNT),
    "decays": int_rule(0, MAX_COUNT),
}
_RNG_RULES: dict[str, Rule] = {
    "torch_cpu": Rule(lambda v: isinstance(v, str), "base64 text"),
    "augment": Rule(lambda v: isinstance(v, str), "base64 text"),
}


def _check_state(state: Mapping[str, Any], source: str) -> None:
    """Schema of the trainer's part of a checkpoint state (the checkpoint reader checked the rest)."""
    check_fields(state, _STATE_RULES, source=source, error=CheckpointError)
    check_fields(state["schedule"], _SCHEDULE_RULES, source=source, error=CheckpointError, where="schedule")
    check_fields(state["rng"], _RNG_RULES, source=source, error=CheckpointError, where="rng")
    for key in ("torch_cpu", "augment"):
        decode_bytes_tensor(state["rng"][key], what=f"RNG state {key!r} in {source}")
    if state["step_in_epoch"] >= state["steps_per_epoch"]:
        raise CheckpointError(f"{source}: step_in_epoch must be below steps_per_epoch")
    check_fields(
        state,
        {"scaler": Rule(lambda v: v is None or isinstance(v, dict), "an object or null", optional=True)},
        source=source,
        error=CheckpointError,
    )


def _load_data(name: str, opts: TrainOptions, recipe: Recipe) -> tuple[Any, Any | None, Any]:
    """``(train, val, test)``: the validation images are carved from the whole training split
    (so they are the same whatever ``--limit-train``), then the limits apply."""
    from cnnatlas.data import load_dataset
    from cnnatlas.data.validation import carve_validation, subset

    train_set = load_dataset(name, root=opts.root, split="train", **opts.data_options)
    test_set = load_dataset(name, root=opts.root, split="test", **opts.data_options)
    train_set, val_set = carve_validation(train_set, recipe.val_fraction, opts.val_seed)

    def first(dataset: Any, limit: int | None) -> Any:
        if dataset is None or limit is None or limit >= len(dataset):
            return dataset
        return subset(dataset, torch.arange(limit), dataset.split)

    train_set = first(train_set, opts.limit_train)
    val_set, test_set = first(val_set, opts.limit_test), first(test_set, opts.limit_test)
    if getattr(train_set, "images", None) is None:  # an image folder: decode so that batches stack
        from cnnatlas.data.augment import folder_decode_side, folder_sample_transform

        side = recipe.image_size or 224
        train_set.transform = folder_sample_transform(True, folder_decode_side(recipe.augment, side))
        for held_out in (val_set, test_set):
            if held_out is not None:  # the centre-crop protocol: 256 for 224 when the recipe augments
                held_out.transform = folder_sample_transform(
                    False, round(side * 8 / 7) if recipe.augment != "none" else side
                )
    return train_set, val_set, test_set


def _default_run_dir(model_name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model_name}-{stamp}"


# -- the loop ----------------------------------------------------------------------------------
class _Trainer:
    """One run's state. Built by :func:`train`; ``fit`` runs it."""

    def __init__(self, model_name: str, opts: TrainOptions, callback: Callback | None) -> None:
        # Everything that can be checked without the data is checked here, on every rank,
        # before the process group starts and before a byte is written.
        _validate(opts)
        self.kill_at_step = _fault_kill_step()
        from cnnatlas.registry import lookup

        self.model_name = lookup(model_name).info.name  # the registered spelling (VGG16 → vgg16)
        self.opts = opts
        self.emit: Callback = callback or (lambda event, payload: None)
        self.lock: RunLock | None = None
        if not opts.resume:
            self.recipe = _resolve_recipe(model_name, opts)
            self.run_dir = Path(opts.out) if opts.out else _default_run_dir(model_name)
            _check_out_dir(self.run_dir)
        self.ctx = D.init_distributed(opts.device)
        self.device = self.ctx.device
        self.start_time = time.perf_counter()
        if opts.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.checkpoint = None
        try:
            if opts.resume:
                self._setup_resume()
            else:
                self._setup_new()
        except BaseException:
            if self.lock is not None:  # a failed setup leaves the folder free for the next writer
                self.lock.release()
            raise

    # -- new run / resumed run ---------------------------------------------------------------
    def _setup_new(self) -> None:
        opts = self.opts
        self.data_name = opts.data or self.recipe.dataset
        self.seed = int(opts.seed)
        self.run_dir = Path(D.broadcast_object(str(self.run_dir) if self.ctx.is_main else None, self.ctx))
        self._build(model_options=dict(opts.model_options))
        self.config = self._make_config()
        if self.ctx.is_main:
            # the first byte written: every option, the recipe, the data and the model are checked
            self.lock = _make_run_dir(self.run_dir)
            write_config(self.run_dir, self.config)
        self.metrics: list[dict[str, Any]] = []

    def _setup_resume(self) -> None:
        opts = self.opts
        self.run_dir = Path(opts.resume)
        config = read_config(self.run_dir)
        check_fields(
            config,
            {"recipe": OBJECT, "seed": SEED_RULE},
            source=repr(str(self.run_dir / CONFIG_FILE)),
            error=CheckpointError,
        )
        saved = config["model"]["name"]
        if saved != self.model_name:
            raise CheckpointError(f"{str(self.run_dir)!r} holds a run of {saved!r}, not {self.model_name!r}")
        if self.ctx.is_main:
            self.lock = lock_run_dir(self.run_dir)
            clean_stale_temporaries(self.run_dir)  # left by a write that was killed; we hold the lock
        self.checkpoint = None
        if list_checkpoints(self.run_dir):
            # the newest complete checkpoint; broken newer ones are skipped, and said so
            self.checkpoint = load_latest_checkpoint(self.run_dir)
            for message in self.checkpoint.skipped:
                self.emit("warning", {"message": message, "is_main": self.ctx.is_main})
            state = self.checkpoint.state
            if state.get("model_name") != saved:
                raise CheckpointError(
                    f"checkpoint {str(self.checkpoint.path)!r} is for {state.get('model_name')!r}, not {saved!r}"
                )
            _check_state(state, f"checkpoint state {str(self.checkpoint.path)!r}")
        # else: killed before its first checkpoint; the run starts again from step 0 with its own
        # config (same seed, so the same result as an uninterrupted run)
        recipe = Recipe.from_dict(config["recipe"])
        if opts.epochs is not None:  # extending (or shortening) a run is the one allowed change
            recipe = recipe.with_overrides({"epochs": opts.epochs})
        self.recipe = recipe
        self.data_name = config["data"]["name"]
        self.seed = int(config["seed"])
        opts.val_seed = int((config["data"].get("validation") or {}).get("seed", 0))
        # the saved settings win, so the resumed run is the same run
        for key in ("amp", "channels_last", "compile", "deterministic", "limit_train", "limit_test", "freeze"):
            setattr(opts, key, config.get(key, getattr(opts, key)))
        opts.root = opts.root or config["data"].get("root")
        opts.data_options = dict(config["data"].get("options", {}))
        if opts.checkpoint_every_steps is None:
            opts.checkpoint_every_steps = config.get("checkpoint_every_steps")
        if opts.checkpoint_every_minutes is None:
            opts.checkpoint_every_minutes = config.get("checkpoint_every_minutes")
        if config.get("world_size", 1) != self.ctx.world_size:
            raise CheckpointError(
                f"{str(self.run_dir)!r} was trained on {config.get('world_size', 1)} processes; "
                "resume it on the same number"
            )
        self._build(model_options=dict(config["model"].get("options", {})), resumed=True)
        self.config = dict(config, recipe=self.recipe.to_dict())
        if self.checkpoint is None:
            self.metrics = []
            return
        from cnnatlas.weights import check_state_dict

        check_state_dict(self.model, self.checkpoint.model_state, source=f"checkpoint {str(self.checkpoint.path)!r}")
        self._check_optimizer_tensors()
        self.metrics = [r for r in read_metrics(self.run_dir) if r["epoch"] <= self.checkpoint.state["epoch"]]

    def _check_optimizer_tensors(self) -> None:
        """Each optimiser buffer must belong to a parameter and match its shape and dtype (or be a scalar)."""
        assert self.checkpoint is not None
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        source = f"checkpoint {str(self.checkpoint.path)!r}"
        for index, per_param in self.checkpoint.optimizer_state["state"].items():
            if index >= len(params):
                raise CheckpointError(
                    f"{source}: optimiser state for parameter {index}, but the model has {len(params)}"
                )
            for key, value in per_param.items():
                if not isinstance(value, Tensor):
                    continue
                param = params[index]
                if value.numel() != 1 and (tuple(value.shape) != tuple(param.shape) or value.dtype != param.dtype):
                    raise CheckpointError(
                        f"{source}: optimiser buffer {key} of parameter {index} is {value.dtype} "
                        f"{tuple(value.shape)}, the parameter {param.dtype} {tuple(param.shape)}"
                    )

    def _build(self, *, model_options: dict[str, Any], resumed: bool = False) -> None:
        from cnnatlas.registry import create_model

        opts, recipe = self.opts, self.recipe
        self.train_set, self.val_set, self.test_set = _load_data(self.data_name, opts, recipe)
        images = getattr(self.train_set, "images", None)
        data_chans = int(images.shape[1]) if images is not None else 3
        if not resumed:
            model_options.setdefault("num_classes", self.train_set.num_classes)
            model_options.setdefault("in_chans", data_chans)
            if recipe.dropout is not None and _builder_accepts(self.model_name, "dropout"):
                model_options.setdefault("dropout", recipe.dropout)
        self.model_options = model_options
        torch.manual_seed(_derived_seed(self.seed, 1))  # identical initial weights on every rank
        self.model: nn.Module = create_model(self.model_name, **model_options)
        self.transfer = None
        if opts.init_from and not resumed:  # a resumed run loads its own checkpoint instead
            from cnnatlas.train.transfer import init_from

            self.transfer = init_from(self.model, opts.init_from, exclude=opts.init_exclude)
            self.emit("transfer", self.transfer.to_dict())
        self.frozen: list[str] = []
        if opts.freeze:
            from cnnatlas.train.transfer import freeze

            self.frozen = freeze(self.model, opts.freeze)
            self.emit("freeze", {"patterns": opts.freeze, "frozen": self.frozen})
        self.adapter = InputAdapter.for_model(
            self.model,
            self.train_set,
            image_size=recipe.image_size if recipe.augment not in SIZE_KEEPING_AUGMENTS or images is None else None,
        )
        self.augment = build_train_augment(
            recipe.augment, out_size=recipe.image_size if recipe.augment not in SIZE_KEEPING_AUGMENTS else None
        )
        self.model.to(self.device)
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if recipe.batch_size % self.ctx.world_size:
            raise InputError(
                f"batch size {recipe.batch_size} (global) is not divisible by the {self.ctx.world_size} processes"
            )
        self.per_rank_batch = recipe.batch_size // self.ctx.world_size
        n_train = len(self.train_set)
        self.steps_per_epoch = n_train // recipe.batch_size  # drop_last: every step a full global batch
        if self.steps_per_epoch < 1:
            raise InputError(f"batch size {recipe.batch_size} exceeds the {n_train} training images")
        self.total_steps = recipe.total_steps(self.steps_per_epoch)
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = LRSchedule(recipe, self.steps_per_epoch, self.total_steps)
        self.optimizer = self._make_optimizer()
        self.forward_model: nn.Module = self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # find_unused_parameters: stochastic depth / drop-path skip whole blocks at random
            self.forward_model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if opts.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.amp_dtype = None
        if opts.amp:
            if self.device.type == "cuda":
                self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.aug_generator = torch.Generator(device=self.device)
        if images is not None:  # in-memory data: one tensor on the training device
            self.train_images = self.train_set.images.to(self.device)
            self.train_labels = self.train_set.labels.to(self.device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        r = self.recipe
        params = [p for p in self.model.parameters() if p.requires_grad]
        if r.optimizer == "rmsprop":
            return torch.optim.RMSprop(
                params,
                lr=r.lr,
                alpha=r.rmsprop_alpha,
                eps=r.rmsprop_eps,
                momentum=r.momentum,
                weight_decay=r.weight_decay,
            )
        return torch.optim.SGD(
            params,
            lr=r.lr,
            momentum=r.momentum,
            weight_decay=r.weight_decay,
            nesterov=r.optimizer == "nesterov" and r.momentum > 0,
        )

    def _make_config(self) -> dict[str, Any]:
        opts = self.opts
        images = getattr(self.train_set, "images", None)
        return {
            "model": {"name": self.model_name, "options": self.model_options},
            "data": {
                "name": self.data_name,
                "root": opts.root,
                "options": opts.data_options,
                "classes": list(self.train_set.classes),
                "train_size": len(self.train_set),
                "validation": {
                    "fraction": self.recipe.val_fraction,
                    "seed": opts.val_seed,
                    "size": len(self.val_set) if self.val_set is not None else 0,
                    "rule": CARVE_RULE,
                },
                "test_size": len(self.test_set),
                "image_size": list(images.shape[1:]) if images is not None else None,
            },
            "recipe": self.recipe.to_dict(),
            "adapter": self.adapter.to_dict(),
            "seed": self.seed,
            "device": str(self.device),
            "amp": opts.amp,
            "channels_last": opts.channels_last,
            "compile": opts.compile,
            "deterministic": opts.deterministic,
            "world_size": self.ctx.world_size,
            "per_rank_batch": self.per_rank_batch,
            "global_batch": self.recipe.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "checkpoint_every_steps": opts.checkpoint_every_steps,
            "checkpoint_every_minutes": opts.checkpoint_every_minutes,
            "limit_train": opts.limit_train,
            "limit_test": opts.limit_test,
            "init_from": self.transfer.to_dict() if self.transfer is not None else None,
            "freeze": opts.freeze,
            "frozen": self.frozen,
            "metrics": {
                "loss": LOSS_DEFINITION,
                "plateau_watches": "val_top1" if self.val_set is not None else "train_top1",
            },
            "versions": _versions(),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        }

    # -- batches ----------------------------------------------------------------------------
    def _batches(self, epoch: int, start_step: int) -> Iterator[tuple[Tensor, Tensor]]:
        perm = epoch_permutation(len(self.train_set), self.seed, epoch)
        shard = D.shard_indices(perm, self.ctx, self.per_rank_batch, self.steps_per_epoch)
        b = self.per_rank_batch
        if getattr(self.train_set, "images", None) is not None:
            shard = shard.to(self.device)
            for step in range(start_step, self.steps_per_epoch):
                ids = shard[step * b : (step + 1) * b]
                yield self.train_images[ids], self.train_labels[ids]
            return
        from torch.utils.data import DataLoader

        batches = [shard[s * b : (s + 1) * b].tolist() for s in range(start_step, self.steps_per_epoch)]
        loader = DataLoader(
            self.train_set,
            batch_sampler=batches,
            num_workers=self.opts.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        from cnnatlas.data.core import iterate_loader

        for images, labels in iterate_loader(loader):  # a worker's DataError becomes our one line
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _reseed_step(self, global_step: int) -> None:
        seed = _derived_seed(self.seed, 2, self.ctx.rank, global_step)
        self.aug_generator.manual_seed(seed)
        torch.manual_seed(_derived_seed(seed, 3))  # dropout, stochastic depth, drop-path

    # -- checkpoints ------------------------------------------------------------------------
    def _save(self, *, epoch: int, step_in_epoch: int, global_step: int, sums: list[float]) -> None:
        if not self.ctx.is_main:
            return
        state = {
            "model_name": self.model_name,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_sums": sums,
            "schedule": self.schedule.state_dict(),
            "rng": _rng_state(self.device, self.aug_generator),
            "data_order": {
                "seed": self.seed,
                "epoch": epoch,
                "next_batch": step_in_epoch,
                "rule": "randperm with a generator seeded by (seed, epoch); rank r takes perm[r::W]",
            },
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "config": self.config,
            "saved": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        save_checkpoint(
            self.run_dir,
            step=global_step,
            model_state=self.model.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            state=state,
            keep=self.opts.keep_checkpoints,
        )
        self.emit("checkpoint", {"global_step": global_step, "epoch": epoch, "step_in_epoch": step_in_epoch})

    def _restore(self) -> tuple[int, int, int, list[float]]:
        ckpt = self.checkpoint
        assert ckpt is not None
        self.model.load_state_dict(ckpt.model_state, strict=True)
        try:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {str(ckpt.path)!r}: optimiser state does not fit: {exc}") from None
        s = ckpt.state
        self.schedule.load_state_dict(s["schedule"])
        _restore_rng_state(s["rng"], self.device, self.aug_generator)
        if self.scaler is not None and s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        if s["steps_per_epoch"] != self.steps_per_epoch:
            raise CheckpointError(
                "the checkpoint was taken with another batch size or data set size; resume with the same settings"
            )
        sums = list(s["epoch_sums"])
        sums += _new_sums()[len(sums) :]  # checkpoints from before train_objective hold three sums
        return int(s["epoch"]), int(s["step_in_epoch"]), int(s["global_step"]), sums

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, dataset: Any) -> dict[str, Any] | None:
        """Top-1, top-5 and loss on ``dataset`` (rank 0 computes, every rank receives); ``None``
        for no data set."""
        if dataset is None:
            return None
        result = None
        if self.ctx.is_main:
            from cnnatlas.train.evaluate import evaluate

            result = evaluate(
                self.model,
                dataset,
                adapter=self.adapter,
                batch_size=EVAL_BATCH,
                device=self.device,
                num_workers=self.opts.num_workers,
            )
            self.model.train()
        return D.broadcast_object(result, self.ctx)

    # -- non-finite loss ----------------------------------------------------------------------
    def _stop_non_finite(self, global_step: int, loss: float, lr: float) -> None:
        bad = sorted(
            name
            for name, p in self.model.named_parameters()
            if not torch.isfinite(p).all() or (p.grad is not None and not torch.isfinite(p.grad).all())
        )
        last = list_checkpoints(self.run_dir)
        diagnostic = {
            "step": global_step,
            "loss": repr(loss),
            "lr": lr,
            "non_finite_parameters": bad,
            "last_good_checkpoint": str(last[-1]) if last else None,
            "rank": self.ctx.rank,
        }
        if self.ctx.is_main:
            atomic_write_json(self.run_dir / DIAGNOSTIC_FILE, diagnostic)
        kept = f"; the last good checkpoint is {last[-1].name}" if last else ""
        raise NonFiniteLossError(
            f"non-finite loss ({loss}) at step {global_step} with lr {lr:g}; training stopped{kept} "
            f"(details in {self.run_dir / DIAGNOSTIC_FILE}); try a lower --lr"
        )

    # -- fit ----------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        epoch, start_step, global_step, sums = 0, 0, 0, _new_sums()
        if self.checkpoint is not None:
            epoch, start_step, global_step, sums = self._restore()
        self.emit(
            "start",
            {
                "run_dir": str(self.run_dir),
                "model": self.model_name,
                "recipe": self.recipe.name,
                "data": self.data_name,
                "device": str(self.device),
                "world_size": self.ctx.world_size,
                "epochs": self.total_epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "global_step": global_step,
                "adapter_rule": self.adapter.rule,
                "resumed": self.checkpoint is not None,
                "is_main": self.ctx.is_main,
            },
        )
        every = self.opts.checkpoint_every_steps
        minutes = self.opts.checkpoint_every_minutes
        every_s = 60 * (DEFAULT_CHECKPOINT_MINUTES if minutes is None else minutes)
        last_save = time.monotonic()
        self.model.train()
        while global_step < self.total_steps:
            epoch_start = time.perf_counter()
            seen_this_session = 0
            for step_in_epoch, (images, labels) in enumerate(self._batches(epoch, start_step), start=start_step):
                lr = self.schedule.lr_at(global_step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self._reseed_step(global_step)
                loss, objective, correct = self._step(images, labels, global_step, lr)
                global_step += 1
                n = labels.shape[0]
                seen_this_session += n
                sums = [sums[0] + loss * n, sums[1] + correct, sums[2] + n, sums[3] + objective * n]
                elapsed = time.perf_counter() - epoch_start
                self.emit(
                    "step",
                    {
                        "epoch": epoch,
                        "step_in_epoch": step_in_epoch + 1,
                        "global_step": global_step,
                        "loss": loss,
                        "acc": correct / n,
                        "lr": lr,
                        "images_per_s": seen_this_session * self.ctx.world_size / max(elapsed, 1e-9),
                    },
                )
                done_epoch = step_in_epoch + 1 == self.steps_per_epoch or global_step >= self.total_steps
                due = (every and global_step % every == 0) or (every_s and time.monotonic() - last_save >= every_s)
                if due and not done_epoch:
                    self._save(epoch=epoch, step_in_epoch=step_in_epoch + 1, global_step=global_step, sums=sums)
                    last_save = time.monotonic()
                if global_step == self.kill_at_step and not done_epoch:
                    _fault_kill()
                if global_step >= self.total_steps:
                    break
            epoch_time = time.perf_counter() - epoch_start
            epoch += 1
            start_step = 0
            total = D.sum_over_ranks(sums, self.ctx)
            val = self._evaluate(self.val_set)
            # The test split is a result, never a signal: evaluated once, after the last epoch.
            test = self._evaluate(self.test_set) if global_step >= self.total_steps else None
            count = max(total[2], 1)
            row = {
                "epoch": epoch,
                "step": global_step,
                "lr": self.schedule.lr_at(global_step - 1),
                "train_loss": total[0] / count,
                "train_top1": total[1] / count,
                "train_objective": total[3] / count,
                **{f"val_{k}": val[k] if val else None for k in ("loss", "top1", "top5")},
                **{f"test_{k}": test[k] if test else None for k in ("loss", "top1", "top5")},
                "epoch_time_s": round(epoch_time, 3),
                "images_per_s": round(seen_this_session * self.ctx.world_size / max(epoch_time, 1e-9), 1),
            }
            # Plateau schedules watch the validation top-1, else the training top-1 (NiN §4.1).
            self.schedule.epoch_end(row["val_top1"] if val else row["train_top1"])
            self.metrics.append(row)
            sums = _new_sums()
            if self.ctx.is_main:
                write_metrics(self.run_dir, self.metrics)
            self._save(epoch=epoch, step_in_epoch=0, global_step=global_step, sums=sums)
            last_save = time.monotonic()
            self.emit("epoch", row)
            if global_step == self.kill_at_step:
                _fault_kill()
        if self.ctx.is_main:
            draw_curves(self.run_dir, self.metrics, title=f"{self.model_name} · {self.recipe.name} · {self.data_name}")
        D.barrier(self.ctx)
        return RunResult(
            run_dir=self.run_dir,
            model=self.model_name,
            recipe=self.recipe.name,
            epochs=epoch,
            global_step=global_step,
            metrics=list(self.metrics),
            wall_time_s=time.perf_counter() - self.start_time,
            adapter_rule=self.adapter.rule,
        )

    def _step(self, images: Tensor, labels: Tensor, global_step: int, lr: float) -> tuple[float, float, int]:
        """One optimiser step; returns the batch's cross-entropy (the evaluation loss, see
        :data:`LOSS_DEFINITION`), the optimised objective and the number of correct top-1s."""
        x = self.adapter(self.augment(images, self.aug_generator))
        if self.opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            output = self.forward_model(x)
            loss = self.model.training_loss(
                output, labels, label_smoothing=self.recipe.label_smoothing, temperature=self.recipe.logit_temperature
            )
        loss_value = float(loss.detach())
        if D.any_rank(not math.isfinite(loss_value), self.ctx):
            self._stop_non_finite(global_step, loss_value, lr)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.recipe.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.recipe.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
            self.optimizer.step()
        self.model.after_optimizer_step()
        logits = self.model.main_logits(output).detach().float()
        correct = int((logits.argmax(1) == labels).sum())
        return float(F.cross_entropy(logits, labels)), loss_value, correct


def _fault_kill() -> None:
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def train(model_name: str, *, callback: Callback | None = None, **options: Any) -> RunResult:
    """Train a registered model with its paper's recipe; see :class:`TrainOptions` for ``options``.

    Returns a :class:`RunResult`; raises ``InputError``/``DataError``/``CheckpointError`` for user
    errors and :class:`NonFiniteLossError` when the loss diverges.
    """
    known = set(TrainOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"train() got unknown options {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    opts = TrainOptions(**options)
    trainer = None
    try:
        with _restored_global_state():
            trainer = _Trainer(model_name, opts, callback)
            return trainer.fit()
    finally:
        if trainer is not None:
            if trainer.lock is not None:
                trainer.lock.release()
            D.shutdown(trainer.ctx)
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
