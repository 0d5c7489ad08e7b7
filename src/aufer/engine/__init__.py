"""The training engine: plain functions (``train_one_epoch``, ``evaluate``), recipes, checkpoints, runner."""

from aufer.engine.loop import evaluate, joint_steps, predict_clips, train_one_epoch

__all__ = ["evaluate", "joint_steps", "predict_clips", "train_one_epoch"]
