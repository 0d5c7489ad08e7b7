"""Models: the registry of names (:mod:`._registry`), building (:mod:`._factory`: ``create_model``,
``load_model``), weights files (:mod:`.weights`), the model contract (:mod:`.contract`) and aufer's own joint
models (:mod:`.joint`). The methods' models live in their packages (:mod:`aufer.methods`) and register themselves;
``create_model`` and ``list_models`` see them all.

As timm: the registry knows names, the factory builds, the weights module reads and writes tensors, and neither
the registry nor the weights module imports the factory.
"""

from aufer.models import joint  # noqa: F401  (registers aufer's own models)
from aufer.models import faceapi_expression  # noqa: F401  (registers the face-api expression network)
from aufer.models import fusion  # noqa: F401  (registers aufer_fusion, the default model's design)
from aufer.models._factory import create_model, load_model
from aufer.models._registry import (IMPORTERS, Importer, UnknownModelError, default_cfg, is_model, list_models,
                                    list_modules, model_entrypoint, register_importer, register_model,
                                    split_model_name_tag)
from aufer.models.contract import JointModel, flip_average, param_groups, probabilities, unwrap
from aufer.models.joint import JointNet
from aufer.models.weights import CheckpointError, load_checkpoint, save_model

__all__ = ["JointNet", "JointModel", "UnknownModelError", "CheckpointError", "create_model", "load_model",
           "save_model", "load_checkpoint", "default_cfg", "is_model", "list_models", "list_modules",
           "model_entrypoint", "register_model", "split_model_name_tag", "Importer", "IMPORTERS",
           "register_importer", "probabilities", "flip_average", "param_groups", "unwrap"]
