"""Model registry: factories, their configured variants (``arch.tag``) and :func:`create_model`.

A model module defines a module-level ``default_cfgs`` dict keyed ``"arch.tag"`` *before* its factories, then
decorates each factory with :func:`register_model`::

    default_cfgs = {"mdhr_r50.bp4d": dict(input_size=224, crop_size=256, norm="imagenet", clip_len=16,
                                          aus=[1, 2, 4, ...], emotions=[])}

    @register_model
    def mdhr_r50(aus=None, input_size=224, drop_path=0.1) -> nn.Module: ...

The first tag listed for an architecture is its default (``create_model("mdhr_r50")`` means
``mdhr_r50.bp4d``). A cfg's keys that name parameters of the factory (``aus``, ``input_size``, ``norm`` ...)
become that variant's default arguments; the other keys describe how to feed the model:

``input_size``  side of the model's input in pixels;
``crop_size``   side of the aligned face crop the model expects from the face store or pipeline, in pixels
                (``preprocess`` resizes it to ``input_size``);
``norm``, ``mean``, ``std``  input normalisation (a :func:`aufer.vocab.normalisation` name and its RGB values
                for inputs in [0, 1]);
``clip_len``    frames T per training / evaluation clip;
``aus``, ``emotions``  output vocabularies; any further key is free (priors, region maps, ...).

:func:`create_model` records the arguments actually used as ``model.config`` (JSON-serialisable, so that
``create_model(**model.config)`` rebuilds the same architecture) and the variant's cfg, updated with those
arguments, as ``model.default_cfg``.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

__all__ = ["UnknownModelError", "lazy_exports", "register_model", "create_model", "list_models", "list_modules", "is_model",
           "default_cfg", "model_entrypoint", "split_model_name_tag"]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}  # arch -> factory
_module_of: dict[str, str] = {}  # arch -> module short name (``joint``)
_tags: dict[str, list[str]] = {}  # arch -> its tags, default first ("" when the arch has no cfg)
_cfgs: dict[str, dict[str, Any]] = {}  # "arch.tag" -> default cfg


class UnknownModelError(KeyError):
    """A model name (or tag) that is not registered; the message lists the available names."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ""


def lazy_exports(module: str, source: str, names) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves ``names`` from the module ``source`` on first use (a method's
    official-checkpoint functions, e.g. ``aufer.models.mdhr.from_official_state_dict`` from ``mdhr_official``),
    so that importing the model module does not import the converter."""
    names = frozenset(names)

    def __getattr__(name: str):
        if name in names:
            import importlib  # noqa: PLC0415

            return getattr(importlib.import_module(source), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def split_model_name_tag(name: str) -> tuple[str, str]:
    """``"mdhr_r50.bp4d"`` → ``("mdhr_r50", "bp4d")``; ``"aufer_tiny"`` → ``("aufer_tiny", "")``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with tuples as lists (recursively); TypeError naming ``where`` if it has no JSON form."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"model config value {where} = {value!r} is not JSON-serialisable "
                    "(use numbers, strings, booleans, lists and dicts)")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name, with the variants its module lists in
    ``default_cfgs`` (keys ``"<fn name>.<tag>"``, first = default tag). The name is added to the module's
    ``__all__``.

    Raises:
        ValueError: if the name is already registered, contains a dot, or a cfg is not JSON-serialisable.
    """
    arch = fn.__name__
    if arch in _entrypoints:
        raise ValueError(f"model {arch!r} is already registered (by {_module_of[arch]})")
    if "." in arch:
        raise ValueError(f"model name {arch!r} must not contain '.' (it separates the tag)")
    mod = sys.modules.get(fn.__module__)
    cfgs = {}
    for key, cfg in (getattr(mod, "default_cfgs", None) or {}).items():
        a, tag = split_model_name_tag(key)
        if a == arch:
            try:
                cfgs[tag] = _jsonable(dict(cfg), key)
            except TypeError as e:
                raise ValueError(str(e)) from None
    if mod is not None and hasattr(mod, "__all__") and arch not in mod.__all__:
        mod.__all__.append(arch)
    _entrypoints[arch] = fn
    _module_of[arch] = fn.__module__.rsplit(".", 1)[-1]
    _tags[arch] = list(cfgs) or [""]
    for tag, cfg in cfgs.items():
        _cfgs[f"{arch}.{tag}"] = cfg
    return fn


def _natural_key(s: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", s)]


def list_models(pattern: str = "*", module: str | None = None, tags: bool = False) -> list[str]:
    """Registered architectures whose name matches the shell-style ``pattern``, naturally sorted.

    Args:
        module: only those defined in this module (short name, e.g. ``"joint"``, or dotted full name).
        tags: list every variant as ``arch.tag`` instead of the architectures (``pattern`` then matches the
            full names).
    """
    archs = [a for a in _entrypoints if module is None or module in (_module_of[a], _entrypoints[a].__module__)]
    names = [f"{a}.{t}" if t else a for a in archs for t in _tags[a]] if tags else archs
    return sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)


def list_modules() -> list[str]:
    """Short names of the modules that registered models, sorted."""
    return sorted(set(_module_of.values()))


def _resolve(name: str) -> tuple[str, str]:
    """``(arch, tag)`` of a registered name, the default tag filled in.

    Raises:
        UnknownModelError: for an unknown architecture or tag.
    """
    arch, tag = split_model_name_tag(name)
    if arch not in _entrypoints:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models(tags=True))}")
    if not tag:
        return arch, _tags[arch][0]
    if tag not in _tags[arch]:
        raise UnknownModelError(f"unknown tag {tag!r} of model {arch!r}; available: "
                                f"{', '.join(f'{arch}.{t}' for t in _tags[arch] if t) or arch + ' (no tags)'}")
    return arch, tag


def is_model(name: str) -> bool:
    """Whether ``name`` (``arch`` or ``arch.tag``) is registered."""
    try:
        _resolve(name)
    except UnknownModelError:
        return False
    return True


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory of ``name`` (its tag is ignored).

    Raises:
        UnknownModelError: for an unknown name.
    """
    return _entrypoints[_resolve(name)[0]]


def default_cfg(name: str) -> dict[str, Any]:
    """A copy of the registered default cfg of ``name`` (``arch`` → its default tag); ``{}`` for an
    architecture registered without cfg.

    Raises:
        UnknownModelError: for an unknown name or tag.
    """
    arch, tag = _resolve(name)
    return _copy(_cfgs.get(f"{arch}.{tag}", {}))


def _copy(cfg: dict) -> dict:
    return copy.deepcopy(cfg)


def _model_cfg(cfg: dict, args: dict) -> dict:
    """The variant's cfg updated with the arguments used: keys shared with the factory take their values; a
    ``crop_size`` equal to the variant's ``input_size`` follows an overridden ``input_size``; ``mean``/``std``
    follow ``norm``."""
    out = _copy(cfg)
    for k in cfg:
        if k in args:
            out[k] = args[k]
    if "input_size" in args and "crop_size" in cfg and cfg["crop_size"] == cfg.get("input_size"):
        out["crop_size"] = args["input_size"]
    if "norm" in out and (out["norm"] != cfg.get("norm") or "mean" not in out):
        from aufer import vocab  # noqa: PLC0415

        mean, std = vocab.normalisation(out["norm"])
        out["mean"], out["std"] = list(mean), list(std)
    return out


def create_model(name: str, checkpoint_path: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("aufer_tiny", aus=(1, 2, 12))`` or
    ``create_model("mdhr_r50.disfa", checkpoint_path="runs/x/best.safetensors")``.

    Keyword arguments set to ``None`` are dropped, so that a recipe key set to ``null`` falls back to the
    variant's cfg and then to the factory's default. The model gets:

    - ``model.config``: ``{"name": "arch.tag", **every argument the factory was called with, defaults of its
      signature included}``, JSON-serialisable, so ``create_model(**model.config)`` rebuilds the same
      architecture. A model may set ``config_overrides`` (a dict) before it is returned: those arguments
      replace the recorded ones (e.g. ``pretrained=False`` once the weights live in the checkpoint).
    - ``model.default_cfg``: the variant's cfg (see the module docstring) updated with those arguments.

    Args:
        name: ``arch`` or ``arch.tag``.
        checkpoint_path: a ``.safetensors`` file written by :func:`aufer.models.io.save_model`, loaded (strictly)
            after construction.

    Raises:
        UnknownModelError: for an unknown name or tag (a ``KeyError``; the message lists the available names).
        TypeError: for an argument the factory does not take, or a config value without a JSON form.
        FileNotFoundError: if ``checkpoint_path`` does not exist.
        aufer.models.io.CheckpointError: if the checkpoint is unreadable or does not fit the architecture.
    """
    arch, tag = _resolve(name)
    fn = _entrypoints[arch]
    full = f"{arch}.{tag}" if tag else arch
    cfg = _cfgs.get(full, {})
    sig = inspect.signature(fn)
    params = sig.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = [k for k in kwargs if k not in params]
    if unknown and not var_kw:
        raise TypeError(f"{full} takes no argument {', '.join(map(repr, unknown))}; it takes: "
                        f"{', '.join(k for k in params)}")
    call = {**{k: copy.deepcopy(v) for k, v in cfg.items() if k in params}, **kwargs}
    bound = sig.bind(**call)
    bound.apply_defaults()
    args: dict[str, Any] = {}
    for k, v in bound.arguments.items():
        if params[k].kind is inspect.Parameter.VAR_KEYWORD:
            args.update(v)
        else:
            args[k] = v
    model = fn(**args)
    record = {**args, **dict(getattr(model, "config_overrides", None) or {})}
    model.config = {"name": full, **_jsonable(record, full)}
    model.default_cfg = _model_cfg(cfg, _jsonable(args, full))
    if checkpoint_path is not None:
        from aufer.models.io import load_checkpoint  # noqa: PLC0415  (io imports this module)

        load_checkpoint(model, checkpoint_path)
    return model
