"""Models: the registry (``create_model``, ``list_models`` ...), the model contract and the joint models.

See :mod:`aufer.models.contract` for what every model provides, and :mod:`aufer.models._registry` for names,
tags (``arch.tag``) and default cfgs.
"""

from aufer.models import joint  # noqa: F401  (registers the models)
from aufer.models import mdhr  # noqa: F401  (registers the mdhr.* models)
from aufer.models import ssm  # noqa: F401  (registers the ssm.* models)
from aufer.models import former_dfer  # noqa: F401  (registers the former_dfer.* models)
from aufer.models._registry import (UnknownModelError, create_model, default_cfg, is_model, list_models,
                                    list_modules, model_entrypoint, register_model, split_model_name_tag)
from aufer.models.contract import JointModel, flip_average, param_groups, probabilities
from aufer.models.io import CheckpointError, load_model, save_model
from aufer.models.joint import JointNet

__all__ = ["JointNet", "JointModel", "UnknownModelError", "CheckpointError", "create_model", "default_cfg",
           "is_model", "list_models", "list_modules", "model_entrypoint", "register_model", "split_model_name_tag",
           "probabilities", "flip_average", "param_groups", "save_model", "load_model"]
