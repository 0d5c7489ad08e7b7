"""Checkpoints: weights in safetensors, everything else (model config, AUs, emotions, training facts) in JSON.

A checkpoint is a pair ``<base>.safetensors`` + ``<base>.json``; the JSON holds ``"model"`` (``model.config``:
the registered name and the arguments that rebuild the architecture) and whatever ``extra`` the writer added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from aufer.models._registry import create_model

__all__ = ["CheckpointError", "save_model", "load_model", "load_checkpoint", "DEFAULT_MODEL", "default_model_path",
           "model_card", "checkpoint_meta", "provenance"]

#: the model shipped inside the package (aufer/data/models/<name>/), used by `aufer predict` without --model
DEFAULT_MODEL = "aufer-lite0-demo"


class CheckpointError(ValueError):
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
               dtype: torch.dtype | None = None) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``, each atomically (a temporary file, then a rename);
    an existing checkpoint at ``path`` is replaced. ``path`` may end in ``.safetensors``.

    Args:
        model: a model built by :func:`~aufer.models.create_model` (it has ``config``).
        extra: JSON-serialisable facts stored beside ``"model"`` (training settings, metrics ...).
        dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` for a shipped model; they are
            cast back to the model's dtype on loading).

    Returns:
        The safetensors path.

    Raises:
        ValueError: if the model has no ``config`` with a ``name``.
        TypeError: if ``extra`` is not JSON-serialisable (nothing is written).
    """
    from safetensors.torch import save  # noqa: PLC0415

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
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
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
    from safetensors.torch import load_file  # noqa: PLC0415

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


def load_model(path: str | Path | None = None) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model`, in eval mode:
    ``create_model(**json["model"], checkpoint_path=<weights>)``.

    Args:
        path: the ``.safetensors`` file, its ``.json``, their common base path, a model folder holding
            ``model.safetensors``, or a training run folder (its selected ``best.safetensors``); None = aufer's shipped default model (:func:`default_model_path`).

    Raises:
        FileNotFoundError: with what was looked for, if the checkpoint is missing.
        CheckpointError: if the JSON or the weights are damaged, the JSON names no model, or the weights do
            not fit it.
        aufer.models.UnknownModelError: if the JSON names a model that is not registered.
    """
    path = default_model_path() if path is None else Path(path)
    if path.is_dir():  # an exported model folder, or a training run (its selected checkpoint)
        path = path / ("best.safetensors" if not (path / "model.safetensors").is_file()
                       and (path / "best.safetensors").is_file() else "model.safetensors")
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    weights, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise FileNotFoundError(f"no checkpoint at {base}: expected {weights.name} and {meta.name}; "
                                "train one with `aufer demo` or pass a run folder")
    try:
        cfg = json.loads(meta.read_text())["model"]
        name = cfg.pop("name")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta}: not valid JSON, perhaps truncated ({e})") from None
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{meta}: holds no model config ({{'model': {{'name': ...}}}})") from None
    from aufer.models._registry import UnknownModelError  # noqa: PLC0415

    try:
        return create_model(name, checkpoint_path=weights, **cfg).eval()
    except UnknownModelError as e:
        raise CheckpointError(f"{meta}: {e.args[0]}; this aufer cannot build it (a newer version's model?)") from None
    except TypeError as e:
        raise CheckpointError(f"{meta}: its model arguments do not fit {name} ({e})") from None


def default_model_path() -> Path:
    """The weights of the model shipped with aufer (:data:`DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: the package holds no default model (a source checkout before it was trained).
    """
    from importlib import resources  # noqa: PLC0415

    p = Path(str(resources.files("aufer"))) / "data" / "models" / DEFAULT_MODEL / "model.safetensors"
    if not p.is_file():
        raise FileNotFoundError(f"aufer's default model is not installed ({p}); pass --model RUN_FOLDER or train "
                                "one with `aufer demo`")
    return p


def model_card(weights: str | Path) -> str | None:
    """The model card (``MODEL_CARD.md``) beside a checkpoint's weights, if there is one."""
    p = Path(weights)
    card = (p if p.is_dir() else p.parent) / "MODEL_CARD.md"
    return card.read_text() if card.is_file() else None



def checkpoint_meta(weights: str | Path) -> dict:
    """The JSON written beside a checkpoint's weights (``model`` config and the writer's ``extra``); ``{}`` if
    unreadable."""
    p = Path(weights)
    if p.is_dir():
        p = p / "model.safetensors"
    try:
        return json.loads(p.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def provenance(weights: str | Path, model: torch.nn.Module) -> dict:
    """What every prediction file and plot should say about the model that made it: its name, where it was
    loaded from, whether it is aufer's shipped default, what it was trained on (from the checkpoint's JSON,
    e.g. that its AU training motion is SYNTHETIC) and the first line of its model card."""
    import aufer  # noqa: PLC0415

    meta = checkpoint_meta(weights)
    card = model_card(weights)
    try:
        is_default = Path(weights).resolve() == default_model_path().resolve()
    except FileNotFoundError:
        is_default = False
    return {"aufer_version": aufer.__version__, "model": getattr(model, "config", {}).get("name"),
            "model_path": str(weights), "default_model": DEFAULT_MODEL if is_default else None,
            "trained_on": meta.get("trained_on"), "synthetic_note": meta.get("synthetic_note"),
            "model_card": card.splitlines()[0].lstrip("# ") if card else None}
