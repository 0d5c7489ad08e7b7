"""Deprecated import path (aufer 0.1): MDHR moved to :mod:`aufer.methods.mdhr` (issue 22, one package per
method). ``aufer.models.mdhr.from_official_state_dict`` and the other names of :mod:`aufer.methods.mdhr` still
work through this module for one release, with a ``DeprecationWarning``; it is removed in the next release.
Checkpoints are unaffected: they store registered model names (``mdhr.*``), not module paths.
"""

import warnings

from aufer.methods import mdhr as _method
from aufer.methods.mdhr import model as _model
from aufer.methods.mdhr import official as _official

_SOURCES = (_method, _model, _official)


def __getattr__(attr: str):
    """``aufer.models.mdhr.X`` → ``aufer.methods.mdhr.X`` (or its ``model`` / ``official`` module), with a
    DeprecationWarning."""
    for src in _SOURCES:
        if not attr.startswith("_") and hasattr(src, attr):
            warnings.warn(f"aufer.models.mdhr.{attr} is deprecated; import it from {src.__name__} "
                          "(aufer.models.mdhr is removed in the next release)", DeprecationWarning, stacklevel=2)
            return getattr(src, attr)
    raise AttributeError(f"module 'aufer.models.mdhr' has no attribute {attr!r}")
