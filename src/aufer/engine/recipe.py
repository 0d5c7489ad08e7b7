"""Recipes: one YAML file per method × dataset (pair), validated against a typed schema.

A recipe names everything a run needs: data (stores, protocol, fold or fold pair, validation split, temporal
sampling, augmentation), model, loss, step, optimiser with parameter groups, schedule, epochs, EMA, gradient
clipping, AMP, seed, evaluation interval and selection metric. Loading goes

    YAML file  →  its ``base:`` files first (paths relative to the file; later ones win)  →  the file
    →  ``--set a.b=value`` overrides  →  validation against :class:`Recipe`  →  a resolved recipe

and the resolved recipe is written into the run folder as ``config.yaml`` (:func:`dump`). An unknown or
mistyped key raises :class:`RecipeError` naming the key and listing the valid ones.

Temporal sampling follows mmaction2's three-number spec: AU clips ``clip_len`` consecutive frames (windows that
never cross a gap), expression clips ``num_segments`` TSN segments.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from aufer.errors import UserMistake

__all__ = ["RecipeError", "Recipe", "DataSource", "Data", "ModelSpec", "Optim", "Schedule", "Train", "Select",
           "Target", "load", "read", "from_dict", "to_dict", "dump", "parse_set", "apply_set",
           "build_section"]


class RecipeError(UserMistake, ValueError):
    """A recipe (or a ``--set`` override) that does not fit the schema; the message names the key."""


# ------------------------------------------------------------------------------------------------ schema
@dataclass
class DataSource:
    """One task's data: a face store made by ``aufer prepare`` and how to split and sample it.

    The protocol is the store's dataset (BP4D/DISFA folds from ``reference/protocols.json``, DFEW/FERV39K/MAFW
    official folds) unless ``split_file`` gives explicit train/val/test ids (subjects for AU data, clips for
    expression data; a JSON object ``{"train": [...], "val": [...], "test": [...]}``).
    """

    store: Optional[str] = None           #: path of the face store (``.sqlite``)
    naming: str = "me_graphau_mdhr"       #: AU fold naming: ``me_graphau_mdhr`` or ``ssm`` (methods.md §1.1)
    val_subjects: float = 0.15            #: AU: share (or count, if ≥ 1) of training subjects held out for validation
    val_fraction: float = 0.1             #: expression: share of training clips held out for validation
    split_file: Optional[str] = None      #: explicit split instead of the benchmark protocol
    clip_len: int = 16                    #: AU: frames per window (T)
    eval_clip_len: Optional[int] = None   #: AU evaluation windows (default: clip_len)
    per_sequence: Optional[int] = None    #: AU training: windows per sequence and epoch (MDHR: 1); null = all
    num_segments: int = 16                #: expression: TSN segments (frames per clip = segments × segment_frames)
    segment_frames: int = 1               #: expression: consecutive frames per segment (Former-DFER: 2)
    batch_size: int = 8
    eval_batch_size: Optional[int] = None  #: default: batch_size
    aus: Optional[list[int]] = None       #: output AU columns (default: the store's); others are masked (−1)
    au_pseudo: Literal["none", "frames", "clip_mean", "clip_count"] = "none"  #: expr: `aufer label-aus` AU labels
    transform: dict[str, Any] = field(default_factory=dict)  #: :class:`aufer.datasets.transforms.ClipTransform` fields


@dataclass
class Data:
    """The heterogeneous pair: ``au`` (frame-labelled) and ``expr`` (clip-labelled); either may be null."""

    au: Optional[DataSource] = None
    expr: Optional[DataSource] = None
    workers: int = 0                      #: loader worker processes per task
    pin_memory: bool = False


@dataclass
class ModelSpec:
    name: str = "aufer_tiny"              #: a registry name (``aufer models``), ``arch`` or ``arch.tag``
    args: dict[str, Any] = field(default_factory=dict)  #: factory arguments; null values fall back to defaults
    checkpoint: Optional[str] = None      #: initial weights (safetensors written by aufer)
    channels_last: bool = False


@dataclass
class Optim:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9                 #: sgd only
    groups: dict[str, dict[str, float]] = field(default_factory=dict)  #: per model group: ``{lr, weight_decay}``


@dataclass
class Schedule:
    name: Literal["constant", "cosine", "multistep", "onecycle"] = "cosine"
    per: Literal["step", "epoch"] = "step"   #: when the learning rate changes
    warmup: float = 0.0                   #: linear warm-up length, in units of ``per`` (steps or epochs)
    warmup_start: float = 0.0             #: warm-up starts at this fraction of the lr
    min_lr_ratio: float = 0.0             #: cosine: final lr / peak lr
    milestones: list[float] = field(default_factory=list)  #: multistep: in units of ``per``
    gamma: float = 0.1                    #: multistep factor
    pct_start: float = 0.15               #: onecycle: share of the run spent rising


@dataclass
class Train:
    epochs: int = 10
    loss: str = "joint"                   #: a name in :data:`aufer.training.LOSSES`
    loss_args: dict[str, Any] = field(default_factory=dict)
    step: str = "joint"                   #: a name in :data:`aufer.training.STEPS`
    step_args: dict[str, Any] = field(default_factory=dict)
    clip_grad: Optional[float] = None     #: max gradient norm; null = off
    accumulate: int = 1                   #: optimiser step every N batches
    ema: Optional[float] = None           #: decay of the weight EMA (updated after every optimiser step); null = off
    ema_eval: bool = True                 #: evaluate and save the EMA weights when ``ema`` is set
    amp: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  #: auto = bf16 on CUDA, fp32 on CPU
    freeze_bn: bool = False               #: BatchNorm layers use running statistics in training (small batches, DDP on CPU)
    checkpoint_every: int = 0             #: also write the resume state every N steps (0 = each epoch only)
    log_every: int = 10                   #: per-step log rows every N steps
    print_every: int = 50                 #: output not a terminal (batch jobs): one progress line every N steps
    max_steps_per_epoch: Optional[int] = None  #: cap (smoke tests, benchmarks)
    probe_c: float = 3e-4                 #: models with an expression probe: the logistic regression's C
    probe_balance: Literal["source", "none"] = "source"  #: probe: equal total weight per record ``source``, or none


@dataclass
class Select:
    mode: Literal["val", "test", "last"] = "val"  #: ``test`` only to reproduce reference numbers (labelled)
    metric: list[str] = field(default_factory=lambda: ["au_f1_mean", "uar"])  #: mean of these (higher is better)
    every: int = 1                        #: validate every N epochs (and after the last)
    f1_policy: Literal["zero", "skip"] = "zero"  #: an AU without positives or predictions: F1 = 0, or left out


@dataclass
class Target:
    """The published figure a recipe should reproduce (``target:``), shown beside the result by ``aufer table``
    and in the experiment summary. Values are in percent, as papers print them.

    ``value: null`` says that no published figure exists for the recipe; ``note`` then says why (e.g. the paper's
    tables were not retrievable). A value without ``source`` is an error.
    """

    metric: str = "au_f1_mean"            #: the summary column compared: ``au_f1_mean``, ``uar``, ``war``, ``AU12``...
    value: Optional[float] = None         #: the published figure in %; null = none published / none found
    source: str = ""                      #: paper, table and provenance tag, e.g. "MDHR CVPR 2024 Table 1 [SRC D2]"
    #: how the paper chose its epoch (the reference code's rule where it is known)
    selection: Literal["test-selected", "validation-selected", "unknown"] = "unknown"
    also: dict[str, float] = field(default_factory=dict)  #: further columns of the same published row, in %
    note: str = ""                        #: what else a reader must know (unverified figure, why none is given)

    def __post_init__(self):
        if (self.value is not None or self.also) and not self.source.strip():
            raise RecipeError("target.source: a published figure names its paper and table "
                              "(e.g. source: \"MDHR CVPR 2024 Table 1 [SRC D2]\")")


@dataclass
class Recipe:
    name: str = ""                        #: default: the recipe file's stem
    seed: int = 0
    fold: Optional[str] = None            #: AU fold, expression fold, or ``E-A`` (expression-AU fold pair)
    folds: Optional[list[str]] = None     #: ``aufer experiment``: the folds to run (default: the protocol's)
    model: ModelSpec = field(default_factory=ModelSpec)
    data: Data = field(default_factory=Data)
    optim: Optim = field(default_factory=Optim)
    schedule: Schedule = field(default_factory=Schedule)
    train: Train = field(default_factory=Train)
    select: Select = field(default_factory=Select)
    extra: dict[str, Any] = field(default_factory=dict)  #: free settings of a program built on the engine (the demo)
    target: Optional[Target] = None       #: the published figure this recipe should reproduce (:class:`Target`)


# ------------------------------------------------------------------------------------------- validation
def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value, tp, key: str):
    """``value`` checked against (and converted to) type ``tp``; raises RecipeError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except RecipeError as e:
                errors.append(e)
        raise errors[0] if errors else RecipeError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}, "
                              f"got {value!r}")
        return _build(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RecipeError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise RecipeError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported schema type {tp!r} at {key}")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in hints:
            where = f"under {prefix}" if prefix else "at the top level"
            raise RecipeError(f"unknown recipe key {key!r}; valid keys {where}: {', '.join(names)}")
        if v is None and not _nullable(hints[k]):
            continue  # null where null is not a value: the key's default (docs/engine.md)
        kwargs[k] = _convert(v, hints[k], key)
    return cls(**kwargs)


def _nullable(tp) -> bool:
    """Whether ``None`` is itself a value of type ``tp`` (``Optional[...]``, ``Any``)."""
    return tp is Any or (typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp))


def build_section(cls, values: dict | None, prefix: str):
    """Validate a free section of a recipe (e.g. the demo's ``extra``) against another dataclass schema, with
    the same messages as the recipe's own keys.

    Raises:
        RecipeError: an unknown key or a value of the wrong type.
    """
    return _build(cls, dict(values or {}), prefix)


def from_dict(values: dict) -> Recipe:
    """A :class:`Recipe` from a plain mapping (as read from YAML).

    Raises:
        RecipeError: for an unknown key (the message lists the valid keys at that level) or a value of the
            wrong type.
    """
    if not isinstance(values, dict):
        raise RecipeError(f"a recipe is a mapping of {', '.join(f.name for f in dataclasses.fields(Recipe))}")
    recipe = _build(Recipe, values)
    _check(recipe)
    return recipe


def _check(r: Recipe) -> None:
    if r.data.au is None and r.data.expr is None:
        raise RecipeError("data: give data.au (an AU store), data.expr (an expression store) or both")
    for name in ("au", "expr"):
        src = getattr(r.data, name)
        if src is not None and not src.store:
            raise RecipeError(f"data.{name}.store: the path of a face store made by `aufer prepare` is required")
    if r.train.epochs < 1:
        raise RecipeError(f"train.epochs must be at least 1, not {r.train.epochs}")
    if r.train.accumulate < 1:
        raise RecipeError(f"train.accumulate must be at least 1, not {r.train.accumulate}")
    if r.select.every < 1:
        raise RecipeError(f"select.every must be at least 1, not {r.select.every}")


def to_dict(recipe: Recipe) -> dict:
    """Plain data of a recipe (YAML/JSON-serialisable)."""
    return dataclasses.asdict(recipe)


# ----------------------------------------------------------------------------------------------- loading
def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise RecipeError(f"{path}: recipes include each other in a loop ({' → '.join(p.name for p in seen)})")
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of settings")
    bases = values.pop("base", None) or []
    merged: dict = {}
    for b in [bases] if isinstance(bases, str) else bases:
        merged = _merge(merged, _read_yaml(path.parent / b, seen + (path,)))
    return _merge(merged, values)


def _set_items(items) -> list[tuple[list[str], Any]]:
    """``--set`` strings → ``(key parts, value)`` pairs; values are read as YAML (text that is not YAML stays
    text)."""
    out = []
    for item in items:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: write KEY=VALUE, e.g. --set train.epochs=5")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"--set {item!r}: KEY is dotted names, e.g. --set model.args.input_size=96")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        out.append((parts, value))
    return out


def apply_set(data: dict, items: list[str] | tuple[str, ...]) -> dict:
    """``data`` with the ``--set KEY=VALUE`` items applied in order (``data`` is not changed).

    A mapping value is merged into the mapping it replaces (as a later recipe file is); any other value, ``null``
    included, replaces it. ``null`` means the key's default (for ``model.args``: no arguments, the model's own
    defaults); an assignment under a key that is null or not a mapping starts it afresh:
    ``--set model.args=null --set model.args.input_size=96`` gives ``model.args = {input_size: 96}``.

    Raises:
        RecipeError: for an item without ``=`` or with an empty key part.
    """
    out = copy.deepcopy(data)
    for parts, value in _set_items(items):
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        last = parts[-1]
        node[last] = _merge(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) \
            else value
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """``["a.b=1", "c=[1, 2]"]`` → ``{"a": {"b": 1}, "c": [1, 2]}``: the items applied to an empty mapping
    (:func:`apply_set`; ``["a=null", "a.b=1"]`` → ``{"a": {"b": 1}}``). To apply them over a recipe, use
    :func:`apply_set`, which also drops what a nulled key held.

    Raises:
        RecipeError: for an item without ``=``.
    """
    return apply_set({}, items)


def _resolve_paths(values: dict, folder: Path) -> None:
    """Relative store / split / checkpoint paths are relative to the current directory, as on the command line;
    ``${recipe_dir}`` expands to the recipe's folder."""
    def fix(v):
        return v.replace("${recipe_dir}", str(folder)) if isinstance(v, str) else v

    for task in ("au", "expr"):
        src = (values.get("data") or {}).get(task)
        if isinstance(src, dict):
            for k in ("store", "split_file"):
                if k in src:
                    src[k] = fix(src[k])
    model = values.get("model")
    if isinstance(model, dict) and "checkpoint" in model:
        model["checkpoint"] = fix(model["checkpoint"])


def read(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The merged, unvalidated mapping of a recipe file (base files, then the file, then ``overrides``).

    Raises:
        RecipeError: a missing or invalid file.
    """
    data = _read_yaml(Path(path))
    data.setdefault("name", Path(path).stem)
    return apply_set(data, list(overrides))


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), values: dict | None = None) -> Recipe:
    """Read a recipe file (with its ``base:`` files), apply ``--set`` overrides and validate.

    Args:
        path: a YAML recipe; or None with ``values``.
        overrides: ``a.b=value`` strings (values parsed as YAML).
        values: a mapping to start from instead of (or merged over) the file.

    Raises:
        RecipeError: missing or invalid file, an unknown key, a value of the wrong type.
    """
    data: dict = {}
    folder = Path.cwd()
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        folder = path.resolve().parent
        data.setdefault("name", path.stem)
    if values:
        data = _merge(data, values)
    data = apply_set(data, list(overrides))
    _resolve_paths(data, folder)
    return from_dict(data)


def dump(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe as YAML (atomically), so that ``aufer train config.yaml`` reruns it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("# resolved aufer recipe (base files and --set overrides applied)\n"
                   + yaml.safe_dump(to_dict(recipe), sort_keys=False))
    tmp.replace(path)
