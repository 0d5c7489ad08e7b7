"""MAL — Meta Auxiliary Learning for facial AU detection (Yong Li, Shiguang Shan; IEEE TAFFC; arXiv 2105.06620),
RECONSTRUCTED: no code of the paper is public and only its abstract was read. :mod:`.step` is the reconstruction
of ``methods.md`` §5 ([RECON]): a learning-to-reweight one-step look-ahead that weighs each expression sample by how
much it helps AU detection (``train.step: mal``), plus the Meta-Weight-Net variant. Every number it produces is a
number of that reconstruction, not of the paper's method.

Docs: ``docs/mal.md``; recipes: ``configs/mal/``; its baselines are :mod:`aufer.methods.mtl`.
"""

from aufer.methods.mal import step  # noqa: F401  (registers train.step mal)
from aufer.methods.mal.step import (RECONSTRUCTED, MetaWeightNet, mal_meta_gradient, mal_meta_weights, mal_step,
                                    mwn_update)

__all__ = ["RECONSTRUCTED", "mal_step", "mal_meta_gradient", "mal_meta_weights", "MetaWeightNet", "mwn_update"]
