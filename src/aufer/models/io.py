"""Checkpoints: weights in safetensors, everything else (model config, AUs, emotions, training facts) in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_model", "load_model"]


def save_model(model: torch.nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json`` atomically (temporary files, then rename).

    The JSON holds ``model`` (the factory name and arguments, from ``model.config``) and ``extra``.
    Returns the safetensors path.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(weights) + ".partial", metadata={"format": "pt"})
    os.replace(str(weights) + ".partial", weights)
    tmp = meta.with_name(meta.name + ".partial")
    tmp.write_text(json.dumps({"model": getattr(model, "config", {}), **(extra or {})}, indent=1))
    os.replace(tmp, meta)
    return weights


def load_model(path: str | Path) -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by :func:`save_model` (``.safetensors`` or its ``.json``,
    or a run folder holding ``model.safetensors``), in eval mode.

    Raises:
        FileNotFoundError: with what was looked for, if the checkpoint is missing.
    """
    from aufer.models import create_model  # noqa: PLC0415

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    base = path.with_suffix("")
    weights, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise FileNotFoundError(f"no checkpoint at {base}: expected {weights.name} and {meta.name}; "
                                "train one with `aufer demo` or pass a run folder")
    cfg = dict(json.loads(meta.read_text())["model"])
    model = create_model(cfg.pop("name"), **cfg)
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
