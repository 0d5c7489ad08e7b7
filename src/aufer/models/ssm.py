"""Deprecated import path (aufer 0.1): SSM moved to :mod:`aufer.methods.ssm` (issue 22, one package per
method). ``aufer.models.ssm.from_official_state_dict`` and the other names of :mod:`aufer.methods.ssm` still
work through this module for one release, with a ``DeprecationWarning``; it is removed in the next release.
Checkpoints are unaffected: they store registered model names (``ssm.*``), not module paths.
"""

import warnings

from aufer.methods import ssm as _method
from aufer.methods.ssm import model as _model
from aufer.methods.ssm import official as _official

_SOURCES = (_method, _model, _official)


def __getattr__(attr: str):
    """``aufer.models.ssm.X`` → ``aufer.methods.ssm.X`` (or its ``model`` / ``official`` module), with a
    DeprecationWarning."""
    for src in _SOURCES:
        if not attr.startswith("_") and hasattr(src, attr):
            warnings.warn(f"aufer.models.ssm.{attr} is deprecated; import it from {src.__name__} "
                          "(aufer.models.ssm is removed in the next release)", DeprecationWarning, stacklevel=2)
            return getattr(src, attr)
    raise AttributeError(f"module 'aufer.models.ssm' has no attribute {attr!r}")
