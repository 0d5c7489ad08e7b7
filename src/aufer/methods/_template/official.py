"""The template method's official checkpoints → aufer (SYNTHETIC example: the "official" layout is imagined).

A real method maps every official tensor name to aufer's here, checks shapes, refuses leftovers by name, and
registers ``aufer import NAME`` (its options are the keyword-only parameters of the ``convert`` function).
The official layout of this example: ``backbone.conv{1,2}.*``, ``backbone.bn{1,2}.*``, ``classifier.*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from aufer import vocab
from aufer.methods._template.model import TemplateAU
from aufer.models import CheckpointError, Importer, create_model, register_importer

__all__ = ["official_key_map", "from_official_state_dict", "import_official"]

_KEYS = {"trunk.0": "backbone.conv1", "trunk.1": "backbone.bn1", "trunk.3": "backbone.conv2", "trunk.4": "backbone.bn2",
         "head": "classifier"}


def official_key_map(model: TemplateAU) -> dict[str, str]:
    """aufer tensor name → official tensor name, for every tensor of ``model``."""
    out = {}
    for k in model.state_dict():
        mod, _, param = k.rpartition(".")
        out[k] = f"{_KEYS[mod]}.{param}"
    return out


def from_official_state_dict(state_dict: Mapping[str, Any] | str | Path, dataset: str = "BP4D") -> TemplateAU:
    """A ``template_au`` holding an official state dict (or the tensors of a ``.pth``, read with
    ``weights_only``); the width comes from the tensor shapes.

    Raises:
        CheckpointError: an unreadable file, missing or unexpected official tensors (naming them).
    """
    if isinstance(state_dict, (str, Path)):
        try:
            state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{state_dict}: not a readable PyTorch checkpoint of tensors ({e})") from None
    sd = dict(state_dict.get("state_dict", state_dict))
    if "backbone.conv1.weight" not in sd:
        raise CheckpointError("not a template checkpoint: no backbone.conv1.weight")
    model = create_model("template_au.tiny", aus=list(vocab.dataset_aus(dataset)),
                         width=int(sd["backbone.conv1.weight"].shape[0]))
    kmap = official_key_map(model)
    missing = [o for o in kmap.values() if o not in sd]
    left = sorted(set(sd) - set(kmap.values()))
    if missing or left:
        raise CheckpointError(f"not a template {dataset} checkpoint: missing {missing[:3]}, unexpected {left[:3]}")
    model.load_state_dict({a: sd[o] for a, o in kmap.items()})
    return model


def import_official(checkpoint: Path, *, dataset: Literal["BP4D", "DISFA"] = "BP4D") -> TemplateAU:
    """``aufer import template_au CKPT --out DIR [--dataset BP4D|DISFA]``."""
    return from_official_state_dict(checkpoint, dataset)


register_importer("template_au", Importer(import_official, source="the template method (SYNTHETIC example)",
                                          help="the template's imagined official layout"))
