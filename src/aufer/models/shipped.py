"""The model shipped inside the package, model cards and the provenance every prediction file carries.

Imports nothing of :mod:`aufer.models` (a model is passed in where one is needed).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from aufer import __version__

__all__ = ["DEFAULT_MODEL", "default_model_path", "model_card", "checkpoint_meta", "provenance"]

#: the model shipped inside the package (aufer/data/models/<name>/), used by `aufer predict` without --model
DEFAULT_MODEL = "aufer-lite0-faceapi"


def default_model_path() -> Path:
    """The weights of the model shipped with aufer (:data:`DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: the package holds no default model (a source checkout before it was trained).
    """
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
    meta = checkpoint_meta(weights)
    card = model_card(weights)
    try:
        is_default = Path(weights).resolve() == default_model_path().resolve()
    except FileNotFoundError:
        is_default = False
    return {"aufer_version": __version__, "model": getattr(model, "config", {}).get("name"),
            "model_path": str(weights), "default_model": DEFAULT_MODEL if is_default else None,
            "trained_on": meta.get("trained_on"), "synthetic_note": meta.get("synthetic_note"),
            "model_card": card.splitlines()[0].lstrip("# ") if card else None}
