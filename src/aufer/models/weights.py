"""Checkpoint files: weights in safetensors, everything else (model config, AUs, emotions, training facts) in JSON.

A checkpoint is a pair ``<base>.safetensors`` + ``<base>.json``; the JSON holds ``"model"`` (``model.config``:
the registered name and the arguments that rebuild the architecture) and whatever ``extra`` the writer added.
This module reads and writes tensors into a model that exists; it imports neither the registry nor the factory
(rebuilding a model from its JSON is :func:`aufer.models.load_model`, in :mod:`aufer.models._factory`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from aufer.errors import UserMistake

__all__ = ["CheckpointError", "save_model", "load_checkpoint", "read_checkpoint_json", "resolve_checkpoint",
           "read_official_tensors"]


class CheckpointError(UserMistake, ValueError):
    """A checkpoint file that exists but cannot be used: truncated or corrupted safetensors or JSON, no model
    config, or weights that do not fit the architecture. The message names the file."""


def _replace_atomic(data: bytes, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def save_model(model: torch.nn.Module, path: str | Path, extra: dict | None = None,
               dtype: torch.dtype | None = None, keep: tuple[str, ...] = ()) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``, each atomically (a temporary file, then a rename);
    an existing checkpoint at ``path`` is replaced. ``path`` may end in ``.safetensors``.

    Args:
        model: a model built by :func:`~aufer.models.create_model` (it has ``config``).
        extra: JSON-serialisable facts stored beside ``"model"`` (training settings, metrics ...).
        dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` for a shipped model; they are
            cast back to the model's dtype on loading).
        keep: tensor-name prefixes stored in their own dtype whatever ``dtype`` says (e.g. ``("faceapi.",)``: a
            part whose weights must stay exact).

    Returns:
        The safetensors path.

    Raises:
        ValueError: if the model has no ``config`` with a ``name``.
        TypeError: if ``extra`` is not JSON-serialisable (nothing is written).
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("the model has no config naming its factory; build it with aufer.models.create_model")
    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_suffix("")
    meta_text = json.dumps({"model": config, **(extra or {})}, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() and not k.startswith(tuple(keep)) else v)
                 for k, v in state.items()}
    _replace_atomic(save(state, metadata={"format": "pt"}), weights)
    _replace_atomic(meta_text.encode(), meta)
    return weights


def load_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load the weights of a ``.safetensors`` file into ``model`` (strictly: same keys and shapes); returns it.

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointError: if the file is truncated or corrupted, or its tensors do not fit the model (the message
            lists the first missing, unexpected or mis-shaped keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path}")
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for damaged files)
        raise CheckpointError(f"{path}: not a readable safetensors file, perhaps truncated or corrupted "
                              f"({type(e).__name__}: {e}); save it again") from None
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in want.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
        name = getattr(model, "config", {}).get("name", type(model).__name__)
        raise CheckpointError(f"{path}: weights do not fit {name} ({'; '.join(parts)})")
    model.load_state_dict(state)
    return model




def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """``(weights, json)`` paths of a checkpoint given as the ``.safetensors`` file, its ``.json``, their common
    base path, a model folder holding ``model.safetensors``, or a training run folder (its selected
    ``best.safetensors``).

    Raises:
        FileNotFoundError: with what was looked for, if either file is missing.
    """
    path = Path(path)
    if path.is_dir():  # an exported model folder, or a training run (its selected checkpoint)
        path = path / ("best.safetensors" if not (path / "model.safetensors").is_file()
                       and (path / "best.safetensors").is_file() else "model.safetensors")
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    weights, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise FileNotFoundError(f"no checkpoint at {base}: expected {weights.name} and {meta.name}; "
                                "train one with `aufer demo` or pass a run folder")
    return weights, meta


def read_checkpoint_json(meta: str | Path) -> tuple[str, dict]:
    """``(registered name, factory arguments)`` of the ``"model"`` entry of a checkpoint's JSON.

    Raises:
        CheckpointError: the JSON is damaged or holds no model config.
    """
    meta = Path(meta)
    try:
        cfg = dict(json.loads(meta.read_text())["model"])
        name = cfg.pop("name")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta}: not valid JSON, perhaps truncated ({e})") from None
    except (KeyError, TypeError, AttributeError, ValueError):
        raise CheckpointError(f"{meta}: holds no model config ({{'model': {{'name': ...}}}})") from None
    return name, cfg


def read_official_tensors(state_dict, saved_by: str = "the official code") -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: a ``.pth`` path (read with ``torch.load(weights_only=True)``) or an
    already loaded mapping; a ``{"state_dict": …, "epoch": …}`` wrapper is unwrapped and DataParallel's ``module.``
    prefix removed. ``saved_by`` names the script that writes such files, for the error message.

    Raises:
        CheckpointError: a missing or unreadable file, or no state dict in it.
    """
    from collections.abc import Mapping  # noqa: PLC0415

    if isinstance(state_dict, (str, Path)):
        path = Path(state_dict)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file; pass the .pth {saved_by} saved")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (zip/pickle errors of a damaged or non-tensor file)
            raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint of tensors "
                                  f"({e.__class__.__name__}); is the file complete?") from None
    if not isinstance(state_dict, Mapping):
        raise CheckpointError("the checkpoint holds no state dict (a mapping of tensor names to tensors)")
    if isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state_dict.items() if torch.is_tensor(v)}

