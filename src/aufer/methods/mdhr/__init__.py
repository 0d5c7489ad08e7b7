"""MDHR — Multi-scale Dynamic and Hierarchical Relationship modelling for facial AU recognition (Wang, Song, Luo,
Deng, Xie, Shen; CVPR 2024, arXiv 2404.06443). Read against the official code (github.com/CVI-SZU/MDHR, MIT,
commit 3497bed).

* :mod:`.model` — the network (``mdhr.*`` models): backbone trunks, multi-scale facial dynamics (MFD, Eq. 1-6),
  the temporal convolution and the similarity classifier;
* :mod:`.hsr` — hierarchical spatial relations (HSR, Eq. 7-9): regions, AU combinations, cross-region GAT;
* :mod:`.loss` — the weighted asymmetric AU loss plus the region sub-task loss (``train.loss: mdhr``);
* :mod:`.official` — official checkpoints ⇄ aufer (``aufer import mdhr``).

Docs: ``methods.md`` §6 and §9.2; recipes: ``configs/mdhr/``.
"""

from aufer.methods.mdhr import loss, model, official  # noqa: F401  (each registers its entries)
from aufer.methods.mdhr.loss import mdhr_class_weights, mdhr_loss
from aufer.methods.mdhr.model import MDHR
from aufer.methods.mdhr.official import (from_official_state_dict, load_official_backbone, load_official_state_dict,
                                         official_key_map, to_official_state_dict)

__all__ = ["MDHR", "mdhr_loss", "mdhr_class_weights", "from_official_state_dict", "load_official_state_dict",
           "to_official_state_dict", "official_key_map", "load_official_backbone"]
