"""Building models: :func:`create_model` (a registered name and its arguments → a model, optionally with its
weights) and :func:`load_model` (a checkpoint → the model it was saved from). Names come from
:mod:`aufer.models._registry`; weights files from :mod:`aufer.models.weights`.

Pretrained transformers weights go through :func:`pretrained_source` (a local folder, the Hugging Face cache, or
the hub only when it answers) and :func:`hub_errors`, so that a model that cannot be had offline is one line
(:class:`aufer.errors.HubUnavailable`), found within seconds instead of after the hub client's six attempts.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from aufer import vocab
from aufer.errors import HubUnavailable
from aufer.models._registry import UnknownModelError, jsonable, model_entrypoint, registered_cfg, resolve_model_name
from aufer.models.shipped import default_model_path
from aufer.models.weights import CheckpointError, load_checkpoint, read_checkpoint_json, resolve_checkpoint

__all__ = ["create_model", "load_model", "model_arguments", "pretrained_source", "hub_errors", "hub_message"]


# ------------------------------------------------------------------------------------------ pretrained weights
def hub_message(model: str, why: str, key: str = "model", fallback: str = "pretrained=false") -> str:
    """The one line of a pretrained model that cannot be loaded: what, why, and the two recipe keys that fix it
    (``model.args.<key>`` = a local copy, or ``model.args.<fallback>``)."""
    what = ("to train from random weights" if fallback.startswith("pretrained") else
            "to build the architecture without files")
    return (f"cannot load {model!r} ({why}): stage it in a local folder and pass --set model.args.{key}=DIR, "
            f"or set --set model.args.{fallback} {what}")


def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (huggingface_hub reads them once, at import)."""
    from huggingface_hub import constants  # noqa: PLC0415  (heavy)

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().lower()
    return env in ("1", "on", "yes", "true") or bool(constants.HF_HUB_OFFLINE)


def _hub_cache() -> str:
    """The hub cache folder, from the environment now: HF_HUB_CACHE, else HF_HOME/hub, else the default."""
    from huggingface_hub import constants  # noqa: PLC0415  (heavy)

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def _hub_answers(timeout: float = 3.0) -> bool:
    """Whether the hub's host takes a TCP connection within ``timeout`` seconds (one try; a proxy in the
    environment is trusted to reach it)."""
    from urllib.parse import urlparse  # noqa: PLC0415

    from huggingface_hub import constants  # noqa: PLC0415  (heavy)

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


def pretrained_source(model: str | os.PathLike | None, key: str = "model", fallback: str = "pretrained=false") -> str:
    """Where to load the pretrained weights ``model`` from, without waiting on an unreachable hub.

    ``model`` is a local folder (returned as it is), or a hub id: its cached snapshot folder when the Hugging Face
    cache holds one (loaded from there, no network), else the id itself when the hub answers (transformers then
    downloads it). ``key`` / ``fallback`` name the factory arguments in the error message.

    Returns:
        A local folder or a hub id for ``from_pretrained``.

    Raises:
        HubUnavailable: a path-like ``model`` that is not a folder; or a hub id not in the cache while offline
            (``HF_HUB_OFFLINE=1``) or while the hub does not answer.
    """
    if model is None or not str(model).strip():
        raise HubUnavailable(f"model.args.{key}: pretrained weights need a Hugging Face hub id or a local folder; "
                             f"give --set model.args.{key}=DIR, or set --set model.args.{fallback}")
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    from huggingface_hub import snapshot_download  # noqa: PLC0415  (heavy)
    from huggingface_hub.errors import HFValidationError  # noqa: PLC0415
    from huggingface_hub.utils import validate_repo_id  # noqa: PLC0415

    try:
        if text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1):
            raise HFValidationError(text)
        validate_repo_id(text)
    except HFValidationError:
        raise HubUnavailable(hub_message(text, "no such local folder, and not a hub id", key, fallback)) from None
    try:
        return snapshot_download(text, local_files_only=True, cache_dir=_hub_cache())
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or a damaged cache entry
        pass
    if _offline():
        raise HubUnavailable(hub_message(text, "offline, not in the Hugging Face cache", key, fallback))
    if not _hub_answers():
        raise HubUnavailable(hub_message(text, "the Hugging Face hub does not answer, and it is not in the cache",
                                         key, fallback))
    return text


@contextlib.contextmanager
def hub_errors(model: str | os.PathLike | None, key: str = "model", fallback: str = "pretrained=false"):
    """Turn what transformers / huggingface_hub raise when pretrained files cannot be had (an ``OSError`` from
    ``from_pretrained``, ``LocalEntryNotFoundError``, ``HFValidationError``, a connection error) inside the block
    into :class:`HubUnavailable` with one line naming ``model.args.<key>``; other errors pass unchanged.

    Raises:
        HubUnavailable: as above (the original error is kept as ``__cause__`` for ``--debug``).
    """
    try:
        yield
    except HubUnavailable:
        raise
    except Exception as e:
        if not _is_hub_error(e):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        local = Path(str(model)).expanduser().is_dir()
        why = "offline, not in the Hugging Face cache" if _offline() and not local else first.rstrip(".")
        raise HubUnavailable(hub_message(str(model), why, key, fallback)) from e


def _is_hub_error(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"HFValidationError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "RepositoryNotFoundError",
                "GatedRepoError", "RevisionNotFoundError", "ConnectionError", "ConnectError", "TimeoutException"}:
        return True
    # transformers re-raises them as a bare OSError (cause kept); FileNotFoundError of a local file is the user's too
    return type(e) in (OSError, FileNotFoundError) or (e.__cause__ is not None and _is_hub_error(e.__cause__))


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


def model_arguments(name: str, **kwargs) -> tuple[str, dict[str, Any]]:
    """``("arch.tag", arguments)``: what :func:`create_model` would call the factory of ``name`` with (the
    variant's cfg, then ``kwargs`` without their ``None`` values, then the signature's defaults), without
    building anything.

    Raises:
        UnknownModelError: for an unknown name or tag.
        TypeError: for an argument the factory does not take (the message lists those it takes).
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
    return full, args


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
    full, args = model_arguments(name, **kwargs)
    cfg = registered_cfg(*resolve_model_name(full))
    model = model_entrypoint(full)(**args)
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
