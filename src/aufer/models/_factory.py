"""Building models: :func:`create_model` (a registered name and its arguments → a model, optionally with its
weights) and :func:`load_model` (a checkpoint → the model it was saved from). Names come from
:mod:`aufer.models._registry`; weights files from :mod:`aufer.models.weights`.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from aufer import vocab
from aufer.models._registry import UnknownModelError, jsonable, model_entrypoint, registered_cfg, resolve_model_name
from aufer.models.shipped import default_model_path
from aufer.models.weights import CheckpointError, load_checkpoint, read_checkpoint_json, resolve_checkpoint

__all__ = ["create_model", "load_model"]


def _model_cfg(cfg: dict, args: dict) -> dict:
    """The variant's cfg updated with the arguments used: keys shared with the factory take their values; a
    ``crop_size`` equal to the variant's ``input_size`` follows an overridden ``input_size``; ``mean``/``std``
    follow ``norm``."""
    out = copy.deepcopy(cfg)
    for k in cfg:
        if k in args:
            out[k] = args[k]
    if "input_size" in args and "crop_size" in cfg and cfg["crop_size"] == cfg.get("input_size"):
        out["crop_size"] = args["input_size"]
    if "norm" in out and (out["norm"] != cfg.get("norm") or "mean" not in out):
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
        checkpoint_path: a ``.safetensors`` file written by :func:`aufer.models.save_model`, loaded (strictly)
            after construction.

    Raises:
        UnknownModelError: for an unknown name or tag (a ``KeyError``; the message lists the available names).
        TypeError: for an argument the factory does not take, or a config value without a JSON form.
        FileNotFoundError: if ``checkpoint_path`` does not exist.
        aufer.models.CheckpointError: if the checkpoint is unreadable or does not fit the architecture.
    """
    arch, tag = resolve_model_name(name)
    fn = model_entrypoint(arch)
    full = f"{arch}.{tag}" if tag else arch
    cfg = registered_cfg(arch, tag)
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
    model.config = {"name": full, **jsonable(record, full)}
    model.default_cfg = _model_cfg(cfg, jsonable(args, full))
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def load_model(path: str | Path | None = None) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`aufer.models.save_model`, in eval mode:
    ``create_model(**json["model"], checkpoint_path=<weights>)``.

    Args:
        path: the ``.safetensors`` file, its ``.json``, their common base path, a model folder holding
            ``model.safetensors``, or a training run folder (its selected ``best.safetensors``); None = aufer's
            shipped default model (:func:`aufer.models.shipped.default_model_path`).

    Raises:
        FileNotFoundError: with what was looked for, if the checkpoint is missing.
        CheckpointError: if the JSON or the weights are damaged, the JSON names no model, names one this aufer does
            not have, or the weights do not fit it.
    """
    weights, meta = resolve_checkpoint(default_model_path() if path is None else path)
    name, cfg = read_checkpoint_json(meta)
    try:
        return create_model(name, checkpoint_path=weights, **cfg).eval()
    except UnknownModelError as e:
        raise CheckpointError(f"{meta}: {e.args[0]}; this aufer cannot build it (a newer version's model?)") from None
    except TypeError as e:
        raise CheckpointError(f"{meta}: its model arguments do not fit {name} ({e})") from None
