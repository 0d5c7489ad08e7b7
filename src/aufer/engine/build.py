"""Recipe → the objects of a run: data (stores, splits, datasets, loaders), model, optimiser with parameter
groups, learning-rate schedule. Every user mistake found here is a :class:`~aufer.engine.recipe.RecipeError`
with one line that says what to change."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aufer import protocols, vocab
from aufer.datasets.clips import ExprClipDataset
from aufer.datasets.transforms import ClipTransform
from aufer.datasets.windows import AUWindowDataset
from aufer.engine.recipe import DataSource, Optim, Recipe, RecipeError, Schedule
from aufer.models import create_model, is_model, list_models
from aufer.models._factory import model_arguments
from aufer.models._registry import model_check
from aufer.models.contract import param_groups
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.store import FaceStore, StoreError

__all__ = ["TaskData", "RunData", "parse_fold", "protocol_folds", "build_data", "check_model", "build_model",
           "build_optimizer",
           "build_scheduler", "lr_factor", "amp_dtype"]


# ------------------------------------------------------------------------------------------------- folds
def parse_fold(recipe: Recipe, fold: str | int | None = None) -> dict[str, str | None]:
    """``{"au": AU fold, "expr": expression fold}`` of a recipe: ``fold`` (or ``recipe.fold``) is a fold name
    for a single-task recipe (or a joint one whose other side has a ``split_file``), ``E-A`` (expression fold,
    AU fold) for a joint one; None = the protocol's first fold (or the explicit split of ``split_file``).

    Raises:
        RecipeError: a joint recipe given one fold, or a fold name with too many parts.
    """
    text = None if fold is None and recipe.fold is None else str(fold if fold is not None else recipe.fold)
    # a side with an explicit split file has no folds
    has_au = recipe.data.au is not None and not recipe.data.au.split_file
    has_expr = recipe.data.expr is not None and not recipe.data.expr.split_file
    if text is None:
        return {"au": None, "expr": None}
    parts = text.split("-")
    if not (has_au or has_expr):
        raise RecipeError(f"fold {text!r}: this recipe's splits come from split files; it has no folds")
    if has_au and has_expr:
        if len(parts) != 2:
            raise RecipeError(f"fold {text!r}: a joint recipe runs on a fold pair, written EXPR-AU (e.g. 1-2 = "
                              "expression fold 1 with AU fold 2)")
        return {"expr": parts[0], "au": parts[1]}
    if len(parts) != 1:
        raise RecipeError(f"fold {text!r}: a single-task recipe takes one fold name (e.g. 2)")
    return {"au": text if has_au else None, "expr": text if has_expr else None}


def fold_name(folds: dict[str, str | None]) -> str:
    """The run-folder name of a fold (pair): ``fold-2``, ``fold-1-3`` (expression 1, AU 3), ``fold-custom``."""
    got = [folds[k] for k in ("expr", "au") if folds.get(k) is not None]
    return "fold-" + ("-".join(got) if got else "custom")


# ---------------------------------------------------------------------------------------------- the data
@dataclass
class TaskData:
    """One task's store, records, split and datasets."""

    kind: str                 # "au" or "expr"
    store: object             # FaceStore
    records: FrameRecords | ClipRecords
    split: protocols.Split
    fold: str | None
    train: object             # datasets
    val: object | None
    test: object | None
    source: DataSource

    def describe(self) -> dict:
        parts = {p: list(getattr(self.split, p)) for p in ("train", "val", "test")}
        return {"dataset": self.records.dataset, "store": str(self.store.path), "fold": self.fold,
                "unit": self.split.unit, "sizes": {p: len(v) for p, v in parts.items()},
                "train_items": len(self.train), "val_items": len(self.val) if self.val is not None else 0,
                "test_items": len(self.test) if self.test is not None else 0, "ids": parts}


@dataclass
class RunData:
    au: TaskData | None
    expr: TaskData | None
    aus: tuple[int, ...]
    emotions: tuple[str, ...]

    @property
    def tasks(self) -> list[TaskData]:
        return [t for t in (self.au, self.expr) if t is not None]


def open_store(src: DataSource, kind: str):
    path = Path(src.store)
    if not path.is_file():
        raise RecipeError(f"data.{kind}.store: {path} does not exist; make it with `aufer prepare DATASET --root "
                          f"DATA --out {path}`")
    try:
        store = FaceStore(path)
        records = store.load_records()
    except StoreError as e:
        raise RecipeError(f"data.{kind}.store: {e}") from None
    want = FrameRecords if kind == "au" else ClipRecords
    if not isinstance(records, want):
        got = "expression clips" if isinstance(records, ClipRecords) else "frame-labelled AU data"
        need = "frame-labelled AU data (BP4D, DISFA, au_csv)" if kind == "au" else \
            "expression clips (DFEW, FERV39K, MAFW, expr_csv)"
        raise RecipeError(f"data.{kind}.store: {path} holds {got} ({records.dataset}); data.{kind} needs {need}")
    return store, records


def _split_file(src: DataSource, kind: str) -> protocols.Split:
    path = Path(src.split_file)
    try:
        d = json.loads(path.read_text())
        return protocols.Split(d.get("train", []), d.get("val", []), d.get("test", []),
                               "subject" if kind == "au" else "clip")
    except FileNotFoundError:
        raise RecipeError(f"data.{kind}.split_file: {path} does not exist") from None
    except (ValueError, AttributeError) as e:
        raise RecipeError(f"data.{kind}.split_file: {path}: {e}") from None


def protocol_folds(kind: str, records) -> list[str]:
    """The folds of a dataset's protocol: BP4D/DISFA ``["1", "2", "3"]``; DFEW/MAFW ``["1" … "5"]``;
    FERV39K ``["1"]``; ``[]`` for data without a protocol."""
    if kind == "au":
        return [str(k) for k in protocols.au_folds(records.dataset)] if records.dataset in protocols.au_datasets() else []
    return protocols.expression_folds(records)


def _split(src: DataSource, kind: str, records, fold: str | None, seed: int) -> tuple[protocols.Split, str | None]:
    if src.split_file:
        if fold is not None:
            raise RecipeError(f"data.{kind}.split_file gives the split; drop the fold ({fold}) or the split file")
        return _split_file(src, kind), None
    folds = protocol_folds(kind, records)
    if not folds:
        raise RecipeError(f"data.{kind}: {records.dataset} has no benchmark protocol here; give data.{kind}.split_file")
    fold = fold or folds[0]
    if fold not in folds:
        raise RecipeError(f"fold {fold!r} is not a fold of {records.dataset}; its folds are {', '.join(folds)}")
    try:
        if kind == "au":
            val = src.val_subjects if src.val_subjects < 1 else int(src.val_subjects)
            return protocols.au_split(records, int(fold), naming=src.naming, val_subjects=val, seed=seed), fold
        return protocols.expression_split(records, fold, val_fraction=src.val_fraction, seed=seed), fold
    except ValueError as e:
        raise RecipeError(f"data.{kind}: {e}") from None


def _subset(kind: str, records, ids):
    if kind == "au":
        return records.of_subjects(ids)
    return records.subset(ids)


def _transform(src: DataSource, kind: str):
    try:
        return ClipTransform(**src.transform)
    except TypeError as e:
        valid = ", ".join(f.name for f in dataclasses.fields(ClipTransform))
        raise RecipeError(f"data.{kind}.transform: {e}; valid keys: {valid}") from None
    except ValueError as e:
        raise RecipeError(f"data.{kind}.transform: {e}") from None


def _datasets(task: str, src: DataSource, store, records, split, aus, seed: int):
    tf = _transform(src, task)
    out = []
    for part in ("train", "val", "test"):
        ids = split.part(part)
        if not ids:
            out.append(None)
            continue
        recs = _subset(task, records, ids)
        train = part == "train"
        if task == "au":
            length = src.clip_len if train else (src.eval_clip_len or src.clip_len)
            out.append(AUWindowDataset(store, recs, length=length, train=train, aus=aus, transform=tf,
                                       seed=seed, per_sequence=src.per_sequence if train else None))
        else:
            out.append(ExprClipDataset(store, recs, num_segments=src.num_segments, train=train, aus=aus,
                                       segment_frames=src.segment_frames,
                                       transform=tf, seed=seed + 1, au_labels=src.au_pseudo))
    return out


def unaugmented_train(task: TaskData, aus):
    """The training clips of an expression task as an evaluation-mode dataset: segment centres, no augmentation
    (what :func:`aufer.models.probe.fit_expression_probe` is fitted on)."""
    src = task.source
    return ExprClipDataset(task.store, task.train.records, num_segments=src.num_segments, train=False, aus=aus,
                           segment_frames=src.segment_frames, transform=_transform(src, "expr"))


def build_data(recipe: Recipe, folds: dict[str, str | None]) -> RunData:
    """Open the recipe's stores, split them by the fold (pair) and build the train/val/test datasets.

    The AU columns are ``data.au.aus`` or the AU store's; an expression-only recipe uses the model's default
    AU set with every label masked. The emotions are the expression store's classes (7 by default).

    Raises:
        RecipeError: a missing store, a store of the wrong kind, a fold outside the protocol, a bad transform.
    """
    opened = {k: open_store(s, k) for k in ("au", "expr") if (s := getattr(recipe.data, k)) is not None}
    if "au" in opened:
        aus = tuple(recipe.data.au.aus or opened["au"][1].aus)
    else:
        aus = tuple(recipe.data.expr.aus or vocab.dataset_aus("BP4D"))
    emotions = tuple(opened["expr"][1].classes) if "expr" in opened else tuple(vocab.EMOTIONS_7)
    tasks: dict[str, TaskData] = {}
    for k, (store, records) in opened.items():
        src = getattr(recipe.data, k)
        split, fold = _split(src, k, records, folds.get(k), recipe.seed)
        train, val, test = _datasets(k, src, store, records, split, aus, recipe.seed)
        if train is None or len(train) == 0:
            raise RecipeError(f"data.{k}: the training part of {records.dataset} fold {fold} is empty")
        tasks[k] = TaskData(k, store, records, split, fold, train, val, test, src)
    return RunData(tasks.get("au"), tasks.get("expr"), aus, emotions)


# --------------------------------------------------------------------------------------------- the model
def _clip_lens(recipe: Recipe) -> dict[str, int]:
    """Frames per clip the data gives the model, by recipe key (the tasks the recipe has)."""
    out: dict[str, int] = {}
    if (au := recipe.data.au) is not None:
        out["data.au.clip_len"] = au.clip_len
        if au.eval_clip_len is not None:
            out["data.au.eval_clip_len"] = au.eval_clip_len
    if (ex := recipe.data.expr) is not None:
        out["data.expr.num_segments"] = ex.num_segments * ex.segment_frames
    return out


def check_model(recipe: Recipe) -> None:
    """Check the recipe's model against the model's own constraints, before any data, store or run folder is
    opened: a known name, arguments its factory takes, an existing ``model.checkpoint``, then the checks the
    model registered (:func:`aufer.models._registry.register_check`; e.g. MDHR's clip length ≥ 2k + 1, input
    side a multiple of 32, no ``model`` for the Lite backbones, and pretrained weights that can be had offline).
    Cheap: nothing is built or loaded (at most a look into the Hugging Face cache and one connection attempt).

    Raises:
        RecipeError: one line naming the recipe key and what to change.
        aufer.errors.HubUnavailable: pretrained weights that cannot be had (one line: a local copy, or
            ``pretrained=false``).
    """
    spec = recipe.model
    if not is_model(spec.name):
        raise RecipeError(f"model.name: unknown model {spec.name!r}; available: {', '.join(list_models())}")
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise RecipeError(f"model.checkpoint: {spec.checkpoint} does not exist")
    try:
        _, args = model_arguments(spec.name, **spec.args)
    except TypeError as e:  # an argument the factory does not take: name the first one
        bad = next((k for k in spec.args if repr(k) in str(e)), None)
        raise RecipeError(f"model.args{'.' + bad if bad else ''}: {e}; drop it: --set model.args.{bad or 'KEY'}=null"
                          ) from None
    check = model_check(spec.name)
    if check is None:
        return
    try:
        check(args, _clip_lens(recipe))
    except ValueError as e:  # the check's protocol: a message that starts with the recipe key
        msg = str(e)
        raise RecipeError(msg if msg.startswith(("model.", "data.")) else f"model.args: {msg}") from None


def run_model_args(args: dict, fold: str | None, seed: int) -> dict:
    """``model.args`` with ``{fold}`` (the run folder's fold name, e.g. ``fold-2``) and ``{seed}`` expanded in its
    strings, so that one recipe names a per-fold or per-seed file, e.g. a two-stage method's stage 2 over an
    experiment: ``init_from: runs/graphau-s1/{fold}/best.safetensors``. The recipe (and its hash) keeps the
    template; the run records the file it read as its weights' source."""
    def expand(v):
        if not isinstance(v, str) or ("{fold}" not in v and "{seed}" not in v):
            return v
        if "{fold}" in v and fold is None:
            raise RecipeError(f"model.args: {v!r} names {{fold}} but this run has no fold")
        return v.replace("{fold}", fold or "").replace("{seed}", str(seed))

    return {k: expand(v) for k, v in args.items()}


def build_model(recipe: Recipe, aus, emotions, fold: str | None = None) -> torch.nn.Module:
    """``create_model(recipe.model.name, aus=…, emotions=…, **recipe.model.args)``, with initial weights from
    ``model.checkpoint``, after :func:`check_model`; ``{fold}`` / ``{seed}`` in the arguments' strings become the
    run's ``fold`` name and seed (:func:`run_model_args`).

    Raises:
        RecipeError: an unknown model name or a bad argument (:func:`check_model`), or one the factory refuses.
        aufer.errors.HubUnavailable: pretrained weights that cannot be had (one line).
    """
    spec = recipe.model
    check_model(recipe)
    kwargs = {"aus": list(aus), "emotions": list(emotions), **run_model_args(spec.args, fold, recipe.seed)}
    try:
        model = create_model(spec.name, checkpoint_path=spec.checkpoint, **kwargs)
    except (TypeError, ValueError) as e:  # an unknown argument, or a value the factory refuses
        raise RecipeError(str(e) if str(e).startswith("model.") else f"model.args: {e}") from None
    return model


def build_optimizer(model: torch.nn.Module, optim: Optim) -> torch.optim.Optimizer:
    """The optimiser over the model's named parameter groups (:func:`aufer.models.contract.param_groups`),
    each with the recipe's ``optim.groups.<name>.lr`` / ``weight_decay`` or the base values.

    Raises:
        RecipeError: a group the model does not have (the message lists the model's groups), a key other
            than lr / weight_decay.
    """
    groups = param_groups(model)
    unknown = set(optim.groups) - set(groups)
    if unknown:
        raise RecipeError(f"optim.groups: the model has no group {sorted(unknown)[0]!r}; its groups are "
                          f"{', '.join(groups)}")
    out = []
    for name, params in groups.items():
        over = dict(optim.groups.get(name, {}))
        bad = set(over) - {"lr", "weight_decay"}
        if bad:
            raise RecipeError(f"optim.groups.{name}: unknown key {sorted(bad)[0]!r}; valid keys: lr, weight_decay")
        params = [p for p in params if p.requires_grad]
        if params:
            out.append({"params": params, "name": name, "lr": float(over.get("lr", optim.lr)),
                        "weight_decay": float(over.get("weight_decay", optim.weight_decay))})
    if optim.name == "adamw":
        return torch.optim.AdamW(out, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    if optim.name == "adam":
        return torch.optim.Adam(out, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    return torch.optim.SGD(out, lr=optim.lr, momentum=optim.momentum)


def lr_factor(s: Schedule, t: int, total: int) -> float:
    """The learning-rate multiplier at schedule position ``t`` (0-based step or epoch) of ``total``: linear
    warm-up from ``warmup_start`` over ``warmup`` units, then constant, cosine to ``min_lr_ratio``, multistep
    (× ``gamma`` at each milestone) or one-cycle (cosine rise over ``pct_start`` of the run, cosine fall)."""
    if s.name == "onecycle":  # as torch.optim.lr_scheduler.OneCycleLR (cosine; div_factor 25, final_div_factor 1e4)
        start, end = 1 / 25, 1 / 25 / 1e4
        rise = max(1.0, s.pct_start * total - 1)
        if t <= rise:
            return 1 + (start - 1) * (1 + math.cos(math.pi * t / rise)) / 2
        frac = min(1.0, (t - rise) / max(1.0, total - 1 - rise))
        return end + (1 - end) * (1 + math.cos(math.pi * frac)) / 2
    if s.warmup > 0 and t < s.warmup:
        return s.warmup_start + (1 - s.warmup_start) * t / s.warmup
    if s.name == "constant":
        return 1.0
    if s.name == "multistep":
        return s.gamma ** sum(t >= m for m in s.milestones)
    frac = (t - s.warmup) / max(1.0, total - s.warmup)
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))) / 2


def build_scheduler(optimizer: torch.optim.Optimizer, s: Schedule, epochs: int, steps_per_epoch: int):
    """A ``LambdaLR`` over :func:`lr_factor`, stepped after every optimiser step (``per: step``) or every
    epoch (``per: epoch``); its state dict is plain numbers (exact resume)."""
    total = epochs * steps_per_epoch if s.per == "step" else epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_factor(s, t, total))


def amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``: ``auto`` = bf16 on CUDA, fp32 (None) elsewhere.

    Raises:
        RecipeError: fp16 on a device without CUDA.
    """
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if name == "fp32":
        return None
    if name == "fp16" and device.type != "cuda":
        raise RecipeError("train.amp: fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    return torch.bfloat16 if name == "bf16" else torch.float16


def class_weights(task: TaskData | None, aus) -> np.ndarray | None:
    """Per-AU class weights of the training fold (methods.md §1.1), over the run's AU columns."""
    if task is None:
        return None
    recs = _subset("au", task.records, task.split.train)
    cols = {a: j for j, a in enumerate(recs.aus)}
    occ = np.full((len(recs), len(aus)), -1, np.int8)
    for k, a in enumerate(aus):
        if a in cols:
            occ[:, k] = recs.occurrence[:, cols[a]]
    return protocols.au_class_weights(occ)
