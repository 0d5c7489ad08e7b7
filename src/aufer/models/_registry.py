"""Model registry: the names of model factories, their configured variants (``arch.tag``), and the official
checkpoint importers (``aufer import NAME``). Building a model is :mod:`aufer.models._factory`; reading and writing
weights is :mod:`aufer.models.weights`; this module imports neither, nor any model (each model module registers
itself; a lookup first imports the plug board, :mod:`aufer.registry`).

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

:func:`~aufer.models.create_model` records the arguments actually used as ``model.config`` (JSON-serialisable, so that
``create_model(**model.config)`` rebuilds the same architecture) and the variant's cfg, updated with those
arguments, as ``model.default_cfg``.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from aufer.registry import Registry, load_plug_board

__all__ = ["UnknownModelError", "register_model", "list_models", "list_modules", "is_model", "default_cfg",
           "model_entrypoint", "split_model_name_tag", "resolve_model_name", "registered_cfg", "jsonable",
           "Importer", "IMPORTERS", "register_importer", "register_check", "model_check"]

_entrypoints: dict[str, Callable[..., nn.Module]] = {}  # arch -> factory
_module_of: dict[str, str] = {}  # arch -> module short name (``joint``)
_tags: dict[str, list[str]] = {}  # arch -> its tags, default first ("" when the arch has no cfg)
_cfgs: dict[str, dict[str, Any]] = {}  # "arch.tag" -> default cfg
_checks: dict[str, Callable[..., None]] = {}  # arch -> its recipe check (register_check)


class UnknownModelError(KeyError):
    """A model name (or tag) that is not registered; the message lists the available names."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ""


def split_model_name_tag(name: str) -> tuple[str, str]:
    """``"mdhr_r50.bp4d"`` → ``("mdhr_r50", "bp4d")``; ``"aufer_tiny"`` → ``("aufer_tiny", "")``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def jsonable(value: Any, where: str) -> Any:
    """``value`` with tuples as lists (recursively); TypeError naming ``where`` if it has no JSON form."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): jsonable(v, f"{where}.{k}") for k, v in value.items()}
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
                cfgs[tag] = jsonable(dict(cfg), key)
            except TypeError as e:
                raise ValueError(str(e)) from None
    if mod is not None and hasattr(mod, "__all__") and arch not in mod.__all__:
        mod.__all__.append(arch)
    _entrypoints[arch] = fn
    _module_of[arch] = _short_module(fn.__module__)
    _tags[arch] = list(cfgs) or [""]
    for tag, cfg in cfgs.items():
        _cfgs[f"{arch}.{tag}"] = cfg
    return fn


def _short_module(module: str) -> str:
    """The name ``list_models(module=...)`` knows a module by: a method's package name for a module of
    ``aufer.methods.<name>`` (``mdhr``), else the module's last component (``joint``)."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["aufer", "methods"] and len(parts) > 2 else parts[-1]


def _natural_key(s: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", s)]


def list_models(pattern: str = "*", module: str | None = None, tags: bool = False) -> list[str]:
    """Registered architectures whose name matches the shell-style ``pattern``, naturally sorted.

    Args:
        module: only those defined in this module (short name: a method's package, e.g. ``"mdhr"``, or a module's
            last component, e.g. ``"joint"``; or the dotted full name).
        tags: list every variant as ``arch.tag`` instead of the architectures (``pattern`` then matches the
            full names).
    """
    load_plug_board()
    archs = [a for a in _entrypoints if module is None or module in (_module_of[a], _entrypoints[a].__module__)]
    names = [f"{a}.{t}" if t else a for a in archs for t in _tags[a]] if tags else archs
    return sorted((n for n in names if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)


def list_modules() -> list[str]:
    """Short names of the modules that registered models, sorted."""
    load_plug_board()
    return sorted(set(_module_of.values()))


def resolve_model_name(name: str) -> tuple[str, str]:
    """``(arch, tag)`` of a registered name, the default tag filled in (``""`` for an architecture without cfgs).

    Raises:
        UnknownModelError: for an unknown architecture or tag.
    """
    load_plug_board()
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
        resolve_model_name(name)
    except UnknownModelError:
        return False
    return True


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory of ``name`` (its tag is ignored).

    Raises:
        UnknownModelError: for an unknown name.
    """
    return _entrypoints[resolve_model_name(name)[0]]


def default_cfg(name: str) -> dict[str, Any]:
    """A copy of the registered default cfg of ``name`` (``arch`` → its default tag); ``{}`` for an
    architecture registered without cfg.

    Raises:
        UnknownModelError: for an unknown name or tag.
    """
    arch, tag = resolve_model_name(name)
    return copy.deepcopy(_cfgs.get(f"{arch}.{tag}", {}))


def registered_cfg(arch: str, tag: str) -> dict[str, Any]:
    """The registered cfg of ``arch.tag`` itself (not a copy: the factory copies what it uses); ``{}`` if none."""
    return _cfgs.get(f"{arch}.{tag}" if tag else arch, {})


def register_check(arch: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the recipe check of model ``arch`` (decorator); the engine calls it before any data loads
    (:func:`aufer.engine.build.check_model`)::

        @register_check("mdhr")
        def check_mdhr(args: dict, clip_lens: dict[str, int]) -> None: ...

    ``args`` are the arguments the factory would get (the variant's cfg, then the recipe's ``model.args``; nulls
    dropped, signature defaults filled in); ``clip_lens`` maps recipe keys to the frames per clip the data gives
    the model (``{"data.au.clip_len": 16, "data.au.eval_clip_len": 16, "data.expr.num_segments": 16}``, only the
    tasks the recipe has). The check raises ``ValueError`` whose message starts with the recipe key to change
    (``"data.au.clip_len: MDHR needs ..."``). It may also raise :class:`aufer.errors.HubUnavailable` for
    pretrained weights that cannot be had.

    Raises:
        ValueError: a second check for the same architecture.
    """
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        if arch in _checks:
            raise ValueError(f"model {arch!r} already has a recipe check ({_checks[arch].__module__})")
        _checks[arch] = fn
        return fn
    return deco


def model_check(name: str) -> Callable[..., None] | None:
    """The recipe check registered for ``name``'s architecture, or None.

    Raises:
        UnknownModelError: for an unknown name.
    """
    return _checks.get(resolve_model_name(name)[0])


# ----------------------------------------------------------------------------------------------- importers
@dataclass(frozen=True)
class Importer:
    """An official-checkpoint importer (``aufer import NAME CKPT --out DIR --OPTION VALUE ...``).

    Attributes:
        convert: ``convert(checkpoint: Path, **options) -> nn.Module``: reads the official file (tensors only, no
            code of it is run) and returns the aufer model, built by ``create_model`` so that it can be saved and
            loaded back. Its keyword-only parameters are the command's options: ``--dataset BP4D`` →
            ``dataset="BP4D"``; a ``Literal[...]`` annotation lists the choices (matched case-insensitively), an
            ``int`` / ``float`` annotation converts the value, a parameter without default is required.
        source: where such checkpoints come from (recorded in the imported model's JSON).
        help: one line for ``aufer import --help``.
    """

    convert: Callable[..., nn.Module]
    source: str
    help: str = ""


IMPORTERS = Registry("importer", "aufer import")
"""Official-checkpoint importers by method name (``aufer import NAME``)."""


def register_importer(name: str, importer: Importer) -> Importer:
    """Register ``importer`` under ``name``; returns it. Raises ValueError if the name is taken."""
    return IMPORTERS.register(name)(importer)


