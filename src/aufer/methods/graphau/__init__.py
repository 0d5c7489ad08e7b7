"""ME-GraphAU and OpenGraphAU — AU relation graphs with node (stage 1, ANFL) and multi-dimensional edge features
(stage 2, MEFL) (Luo et al., IJCAI 2022; github.com/CVI-SZU/ME-GraphAU, MIT; github.com/lingjivoo/OpenGraphAU,
Apache-2.0). Read against the official code; docs: ``docs/graphau.md``.

* :mod:`.backbone` — ResNet-18 / ResNet-50 trunks and :mod:`.swin` Swin-T / Swin-B trunks, with the official
  tensor names;
* :mod:`.model` — the network, ``graphau.<variant>_<backbone>_stage<1|2>`` (variant ``opengraphau`` (27 main +
  14 left/right AUs), ``bp4d`` (12), ``disfa`` (8));
* :mod:`.official` — official checkpoints → aufer (``aufer import graphau``);
* :mod:`.loss` — the ME-GraphAU training loss (``train.loss: graphau``).

Output naming: ``model.aus`` holds the main AU numbers (ints, the model contract; OpenGraphAU: its 27 main AUs),
``model.au_names`` the name of every ``"au"`` column as a string, in output order — ``"AU1"`` … then, for
OpenGraphAU only, the 14 sub-AUs ``"AUL1", "AUR1", "AUL2", "AUR2", "AUL4", "AUR4", "AUL6", "AUR6", "AUL10",
"AUR10", "AUL12", "AUR12", "AUL14", "AUR14"`` (columns 27-40); ``model.sub_aus`` the same as ``(side, au)``.
``model.sub_parents`` the main AU whose node scores each sub-AU (the official code scores the pair it labels
AUL12 / AUR12 on the AU11 node; names and computation are kept as official). ``"au"`` are logits of the official
probabilities (cosine similarities, thresholded at 0.5 by the official code).
"""

from aufer.methods.graphau import backbone, loss, model, official, swin  # noqa: F401  (each registers its entries)
from aufer.methods.graphau.model import GraphAU, au_column_names
from aufer.methods.graphau.official import from_official_state_dict, official_key_map, to_official_state_dict

__all__ = ["GraphAU", "au_column_names", "from_official_state_dict", "official_key_map", "to_official_state_dict"]
