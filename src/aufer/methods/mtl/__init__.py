"""The multi-task baselines of the MAL comparison: what a method that learns AUs and expressions together must
beat.

* **Single-task AU / expression**: the ``joint`` loss (:func:`aufer.training.losses.joint_loss`) on a recipe with one
  task's data (``configs/baseline/*_au-only_*``, ``*_expr-only_*``): the other head gets no gradient.
* **Naive joint** (hard parameter sharing): the ``joint`` loss with both tasks' data,
  ``au_weight · L_AU + expr_weight · L_expr`` (``configs/baseline/*_naive-joint_*``). It lives in
  :mod:`aufer.training.losses` because every method may fall back to it.
* **Uncertainty weighting** (Kendall, Gal & Cipolla, CVPR 2018): :mod:`.uncertainty` (``train.loss: uncertainty``),
  whose learnable log variances use the loss-parameter mechanism of :mod:`aufer.training.loss_params`.

Docs: ``docs/mal.md`` (the comparison); recipes: ``configs/baseline/``.
"""

from aufer.methods.mtl import uncertainty  # noqa: F401  (registers train.loss uncertainty)
from aufer.methods.mtl.uncertainty import UncertaintyWeights, uncertainty_loss, uncertainty_terms

__all__ = ["UncertaintyWeights", "uncertainty_loss", "uncertainty_terms"]
