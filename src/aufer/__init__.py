"""aufer: facial Action Unit detection and expression recognition, learned jointly across heterogeneous data.

Quick use::

    import aufer
    model = aufer.load_model("runs/demo-20261121-101500")   # a run folder from `aufer demo`
    df = aufer.detect("video.mp4", model)                   # one row per frame and face (pandas)
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "detect": ("aufer.predict.rows", "predict"),
    "load_model": ("aufer.models", "load_model"),
    "create_model": ("aufer.models", "create_model"),
    "list_models": ("aufer.models", "list_models"),
    "FacePipeline": ("aufer.faces.pipeline", "FacePipeline"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    """Import the public entry points on first use (keeps ``import aufer`` light: the command line answers
    ``--version`` and checks its inputs before PyTorch is imported)."""
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'aufer' has no attribute {name!r}")
