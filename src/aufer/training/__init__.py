"""The training layer below the methods: masked losses and the loss context (:mod:`.losses`), the step context,
``forward_batch`` and the default steps (:mod:`.steps`), the loss-parameter mechanism (:mod:`.loss_params`) and
the registries every method fills (:mod:`.registry`: ``LOSSES``, ``STEPS``, ``EVALUATORS``). Nothing here imports
a method or the engine."""

from aufer.training.loss_params import attach_loss_params, make_loss_params
from aufer.training.losses import LossContext, joint_loss, masked_bce, masked_ce, mixup_bce
from aufer.training.registry import (EVALUATORS, LOSSES, STEPS, Evaluator, register_evaluator, register_loss,
                                     register_step)
from aufer.training.steps import StepContext, forward_batch, joint_step, mixup_step, to_device

__all__ = ["LossContext", "StepContext", "LOSSES", "STEPS", "EVALUATORS", "Evaluator", "register_loss",
           "register_step", "register_evaluator", "masked_bce", "masked_ce", "mixup_bce", "joint_loss",
           "forward_batch", "to_device", "joint_step", "mixup_step", "attach_loss_params", "make_loss_params"]
