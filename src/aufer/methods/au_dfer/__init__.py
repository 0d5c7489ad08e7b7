"""AU-DFER — Action Unit Enhance Dynamic Facial Expression Recognition (Liu, Gu, Shi, Fu; arXiv 2507.07678): a
prior-weighted AU loss that trains an expression model's AU head on AU pseudo-labels. Read against the official
code (github.com/Cross-Innovation-Lab/AU-DFER).

* :mod:`.loss` — the prior-weighted AU loss ``(1 − r)·CE + r·L_AU`` (``train.loss: au_dfer``);
* :mod:`.vocab` — its emotion × AU matrices ``W`` and ``pos_weight`` options;
* :mod:`.former_dfer` — its host Former-DFER (``former_dfer.*`` models) with the clip-level AU head, and the
  official key converter;
* the two clip pseudo-label rules, :func:`clip_labels_mean` (Former-DFER) and :func:`clip_labels_count` (M3DFEL),
  live in :mod:`aufer.store.clip_rules`: the expression datasets apply them when a recipe asks for
  ``data.expr.au_pseudo: clip_mean | clip_count``, and the data layer sits below the methods. They are re-exported
  here.

The pseudo-labels themselves are written by ``aufer label-aus`` (:mod:`aufer.store.au_labels`). Docs:
``docs/au_dfer.md``; recipes: ``configs/au-dfer/``.
"""

from aufer.methods.au_dfer import former_dfer, loss  # noqa: F401  (each registers its entries)
from aufer.methods.au_dfer.former_dfer import FormerDFER
from aufer.methods.au_dfer.loss import AU_DFER_AUS, au_dfer_au_loss, au_dfer_loss, au_dfer_matrices, pos_weight_for
from aufer.methods.au_dfer.vocab import au_dfer_pos_weight, au_dfer_weights
from aufer.store.clip_rules import clip_labels_count, clip_labels_mean

__all__ = ["AU_DFER_AUS", "au_dfer_loss", "au_dfer_au_loss", "au_dfer_matrices", "pos_weight_for", "au_dfer_weights",
           "au_dfer_pos_weight", "FormerDFER", "clip_labels_mean", "clip_labels_count"]
