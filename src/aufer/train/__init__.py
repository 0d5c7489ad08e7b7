"""Training: a plain loop (``train_one_epoch``, ``evaluate``) and safetensors checkpoints."""

from aufer.train.checkpoint import load_model, save_checkpoint
from aufer.train.loop import evaluate, joint_steps, predict_clips, train_one_epoch

__all__ = ["evaluate", "joint_steps", "load_model", "predict_clips", "save_checkpoint", "train_one_epoch"]
