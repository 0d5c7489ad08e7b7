"""Model registry, after timm: ``@register_model`` on a factory, then ``create_model(name, **cfg)``."""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model, e.g. ``create_model("aufer_tiny", aus=(1, 2, 12), emotions=EMOTIONS_7)``.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return factory(**cfg)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))
