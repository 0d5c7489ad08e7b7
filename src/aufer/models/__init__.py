"""Models: a registry (``create_model``, ``list_models``) of joint AU + expression models."""

from aufer.models import joint  # noqa: F401  (registers the models)
from aufer.models.joint import JointNet
from aufer.models.registry import create_model, list_models, register_model

__all__ = ["JointNet", "create_model", "list_models", "register_model"]
