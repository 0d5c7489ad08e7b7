"""Official ME-GraphAU / OpenGraphAU checkpoints → aufer's :class:`~aufer.methods.graphau.model.GraphAU`
(``aufer import graphau``).

The official ``train_stage1.py`` / ``train_stage2.py`` save ``{"epoch", "state_dict", "optimizer"}`` of a model
that may be wrapped in ``DataParallel`` (keys ``module.*``); both wrappers are accepted, as a bare state dict.
Only tensors are read (``torch.load(weights_only=True)``). Official tensor names per variant (aufer's names are
the official ones where the two codes agree):

======================================  ==================================  ==================================
aufer                                   OpenGraphAU                         ME-GraphAU (BP4D / DISFA)
======================================  ==================================  ==================================
``head.class_linears.i.*``              ``head.main_class_linears.i.*``     same
``head.sc``                             ``head.main_sc``                    same
``head.sub_sc``                         same                                —
``head.gnn.graph_layers.l.X.*``         same (stage 2)                      ``head.gnn.X{l+1}.*`` (X = U … bne)
``head.edge_fc.*``                      —                                   same (stage 2)
======================================  ==================================  ==================================

``backbone.*`` (torchvision-layout ResNet without ``fc``, Microsoft-layout Swin without ``head``),
``global_linear.*``, the stage-1 ``head.gnn.{U,V,bnv}`` and
the stage-2 ``head.edge_extractor.*`` keep their names.

Refused, each with one line (:class:`aufer.models.CheckpointError`, exit code 2 on the command line): an
unreadable or truncated file; a checkpoint of the other stage (the official ``demo.py`` always builds the stage-1
model and loads with ``strict=False``, so a stage-2 file silently leaves the stage-1 graph ``head.gnn.U/V/bnv`` at
random initialisation — aufer names the keys and the right ``--stage``); another variant (AU count); another
backbone; any missing, unexpected or mis-shaped tensor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from aufer.methods.graphau.model import VARIANTS, GraphAU
from aufer.models import CheckpointError, Importer, create_model, register_importer
from aufer.models.weights import read_official_tensors

__all__ = ["official_key_map", "read_official", "check_official", "from_official_state_dict",
           "to_official_state_dict", "import_official"]

_ME_GNN = re.compile(r"head\.gnn\.(U|V|A|B|E|bnv|bne)([12])\.(.+)")


def official_key_map(model: GraphAU, variant: str) -> dict[str, str]:
    """``{aufer state_dict key: official key}`` for every tensor of ``model`` in the layout of ``variant``."""
    og = variant == "opengraphau"
    out = {}
    for key in model.state_dict():
        o = key
        if key.startswith("head.class_linears.") and og:
            o = "head.main_" + key[len("head."):]
        elif key == "head.sc" and og:
            o = "head.main_sc"
        elif key.startswith("head.gnn.graph_layers.") and not og:
            layer, name, rest = key[len("head.gnn.graph_layers."):].split(".", 2)
            o = f"head.gnn.{name}{int(layer) + 1}.{rest}"
        out[key] = o
    return out


def read_official(state_dict: Mapping[str, Any] | str | Path) -> dict[str, torch.Tensor]:
    """The official tensors of a ``.pth`` path or a (wrapped) state dict, ``module.`` prefixes removed
    (:func:`aufer.models.weights.read_official_tensors`).

    Raises:
        CheckpointError: a missing or unreadable file, or no state dict in it.
    """
    return read_official_tensors(state_dict, "the official train_stage*.py")


def _file_stage(sd: Mapping[str, torch.Tensor]) -> tuple[int | None, list[str]]:
    two = sorted(k for k in sd if k.startswith(("head.edge_extractor.", "head.gnn.graph_layers.", "head.edge_fc."))
                 or _ME_GNN.fullmatch(k))
    one = sorted(k for k in sd if re.fullmatch(r"head\.gnn\.(U|V|bnv)\.[a-z_]+", k))
    if two and not one:
        return 2, two
    if one and not two:
        return 1, one
    return None, []


def _file_backbone(sd: Mapping[str, torch.Tensor]) -> str | None:
    if "backbone.layer1.0.conv3.weight" in sd:
        return "resnet50"
    if "backbone.layer1.0.conv1.weight" in sd:
        return "resnet18"
    if any(k.startswith("backbone.patch_embed.") for k in sd):
        w = sd.get("backbone.patch_embed.proj.weight")
        return "swin_b" if w is not None and w.shape[0] == 128 else "swin_t"
    return None


def check_official(sd: Mapping[str, torch.Tensor], variant: str, backbone: str, stage: int) -> int:
    """Check the file's stage, variant and backbone against the options; returns its number of main AUs.

    Raises:
        CheckpointError: one line naming what the file is and the option to give.
    """
    fstage, keys = _file_stage(sd)
    if fstage is not None and fstage != stage:
        groups = []
        for k in keys:
            g = ("head.gnn.U/V/bnv" if fstage == 1 else "head.gnn.U1..bne2" if _ME_GNN.fullmatch(k)
                 else ".".join(k.split(".")[:3 if k.startswith("head.gnn.") else 2]) + ".*")
            if g not in groups:
                groups.append(g)
        what = "MEFL edge features and gated graph" if fstage == 2 else "ANFL k-NN node graph"
        raise CheckpointError(f"this is a stage-{fstage} checkpoint ({what}: {', '.join(groups)}), not stage "
                              f"{stage}: use --stage {fstage}")
    og_file = "head.main_sc" in sd
    sc = sd.get("head.main_sc", sd.get("head.sc"))
    if sc is None or sc.dim() != 2:
        raise CheckpointError("not a ME-GraphAU / OpenGraphAU checkpoint: no head.sc or head.main_sc tensor")
    n = int(sc.shape[0])
    if og_file != (variant == "opengraphau"):
        right = "opengraphau" if og_file else {12: "bp4d", 8: "disfa"}.get(n, "bp4d or disfa")
        raise CheckpointError(f"this is {'an OpenGraphAU' if og_file else 'a ME-GraphAU'} checkpoint with {n} main "
                              f"AUs ({'head.main_sc' if og_file else 'head.sc'} {tuple(sc.shape)}), not --variant "
                              f"{variant}: use --variant {right}")
    want = {"opengraphau": 27, "bp4d": 12, "disfa": 8}[variant]
    if n != want:
        right = {12: "bp4d", 8: "disfa", 27: "opengraphau"}.get(n)
        raise CheckpointError(f"the checkpoint has {n} AUs (head.sc {tuple(sc.shape)}), --variant {variant} has "
                              f"{want}" + (f": use --variant {right}" if right else ""))
    fb = _file_backbone(sd)
    if fb is not None and fb != backbone:
        raise CheckpointError(f"this checkpoint has a {fb} backbone, not --backbone {backbone}: use --backbone {fb}")
    return n


def from_official_state_dict(state_dict: Mapping[str, Any] | str | Path, variant: str = "opengraphau",
                             backbone: str = "resnet50", stage: int = 1, **model_options) -> GraphAU:
    """An aufer ``graphau.<variant>_<backbone>_stage<stage>`` holding an official checkpoint's weights.

    Args:
        state_dict: the official ``MEFARG.state_dict()`` (optionally ``{"state_dict": ...}`` with ``module.``
            prefixes, as ``train_stage*.py`` saves it) or the path of such a ``.pth``.
        variant: ``"opengraphau"`` (27 + 14 AUs), ``"bp4d"`` (12) or ``"disfa"`` (8).
        backbone: ``"resnet18"``, ``"resnet50"``, ``"swin_t"`` or ``"swin_b"``.
        stage: 1 (ANFL) or 2 (MEFL).
        model_options: further :func:`~aufer.methods.graphau.model.graphau` arguments (``input_size``, ...).

    Raises:
        CheckpointError: see :func:`check_official`, and missing / unexpected / mis-shaped tensors by name.
    """
    if variant not in VARIANTS:
        raise CheckpointError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    stage = int(stage)
    if stage not in (1, 2):
        raise CheckpointError(f"--stage {stage}: 1 (ANFL) or 2 (MEFL)")
    sd = read_official(state_dict)
    check_official(sd, variant, backbone, stage)
    model = create_model(f"graphau.{variant}_{backbone}_stage{stage}", **model_options)
    kmap = official_key_map(model, variant)
    own = model.state_dict()
    missing = [o for o in kmap.values() if o not in sd]
    extra = sorted(set(sd) - set(kmap.values()))
    bad = [f"{o} {tuple(sd[o].shape)}≠{tuple(own[a].shape)}" for a, o in kmap.items()
           if o in sd and tuple(sd[o].shape) != tuple(own[a].shape)]
    if missing or extra or bad:
        raise CheckpointError(f"official graphau {variant} {backbone} stage-{stage} checkpoint does not fit: "
                              + "; ".join(f"{w}: {', '.join(v[:6])}{' ...' if len(v) > 6 else ''}"
                                          for w, v in (("missing", missing), ("unexpected", extra), ("shape", bad))
                                          if v))
    model.load_state_dict({a: sd[o] for a, o in kmap.items()}, strict=True)
    return model


def to_official_state_dict(model: GraphAU, variant: str) -> dict[str, torch.Tensor]:
    """The model's tensors under the official names of ``variant`` (loadable by the official ``MEFARG``)."""
    sd = model.state_dict()
    return {o: sd[a].detach().clone() for a, o in official_key_map(model, variant).items()}


def import_official(checkpoint: Path, *, variant: Literal["opengraphau", "bp4d", "disfa"],
                    backbone: Literal["resnet18", "resnet50", "swin_t", "swin_b"], stage: Literal[1, 2]) -> GraphAU:
    """``aufer import graphau CKPT --variant opengraphau|bp4d|disfa --backbone resnet18|resnet50|swin_t|swin_b
    --stage 1|2``."""
    return from_official_state_dict(checkpoint, variant, backbone, int(stage))


register_importer("graphau", Importer(
    import_official, source="official ME-GraphAU / OpenGraphAU code (github.com/CVI-SZU/ME-GraphAU, "
                            "github.com/lingjivoo/OpenGraphAU)",
    help="an official ME-GraphAU (BP4D/DISFA) or OpenGraphAU checkpoint (.pth), stage 1 or 2, "
         "ResNet-18/50 or Swin-T/B"))
