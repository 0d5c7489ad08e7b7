"""The training engine shared by every method: recipes (:mod:`.recipe`), the loop as plain functions
(:mod:`.loop`), step functions (:mod:`.steps`), exact-resume training state (:mod:`.state`), DDP
(:mod:`.distributed`), one run (:mod:`.runner`) and experiments over folds with paper-style tables
(:mod:`.experiment`)."""

from aufer.engine.loop import evaluate, predict, summarise, train_one_epoch

__all__ = ["evaluate", "predict", "summarise", "train_one_epoch"]
