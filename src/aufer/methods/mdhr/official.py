"""Official MDHR checkpoints (github.com/CVI-SZU/MDHR, MIT, commit 3497bed) ⇄ aufer's :class:`~aufer.methods.mdhr.model.MDHR`.

The official code saves its own module names, torchvision-style ResNet keys and Microsoft Swin keys with a fused
``qkv``; :func:`official_key_map` names, for every aufer tensor, the official tensor it comes from (and which
third of a fused ``qkv``). Only tensors are read (``torch.load(weights_only=True)``). These functions are also
reachable as ``aufer.methods.mdhr.model.<name>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from aufer.methods.mdhr.model import HF_KIND, MDHR, HFResNetTrunk, HFSwinTrunk, backbone_name, dataset_name
from aufer.models import CheckpointError, Importer, create_model, register_importer
from aufer.models.weights import read_official_tensors

__all__ = ["official_key_map", "from_official_state_dict", "load_official_state_dict", "to_official_state_dict", "load_official_backbone"]


_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RESNET_RULES = [
    (r"embedder\.embedder\.convolution\.weight", lambda: "conv1.weight"),
    (rf"embedder\.embedder\.normalization\.{_BN}", lambda p: f"bn1.{p}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight",
     lambda s, b, c: f"layer{int(s) + 1}.{b}.conv{int(c) + 1}.weight"),
    (rf"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.{_BN}",
     lambda s, b, c, p: f"layer{int(s) + 1}.{b}.bn{int(c) + 1}.{p}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
     lambda s, b: f"layer{int(s) + 1}.{b}.downsample.0.weight"),
    (rf"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.{_BN}",
     lambda s, b, p: f"layer{int(s) + 1}.{b}.downsample.1.{p}"),
]
_BLK = r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
# transformers ≥ 5 names first, then the 4.x names (attention.self.query ...).
_SWIN_RULES = [
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", lambda p: f"patch_embed.proj.{p}"),
    (r"embeddings\.norm\.(weight|bias)", lambda p: f"patch_embed.norm.{p}"),
    (_BLK + r"layernorm_before\.(weight|bias)", lambda i, j, p: f"layers.{i}.blocks.{j}.norm1.{p}"),
    (_BLK + r"layernorm_after\.(weight|bias)", lambda i, j, p: f"layers.{i}.blocks.{j}.norm2.{p}"),
    (_BLK + r"attention\.(?:q_proj|self\.query)\.(weight|bias)", lambda i, j, p: (f"layers.{i}.blocks.{j}.attn.qkv.{p}", 0)),
    (_BLK + r"attention\.(?:k_proj|self\.key)\.(weight|bias)", lambda i, j, p: (f"layers.{i}.blocks.{j}.attn.qkv.{p}", 1)),
    (_BLK + r"attention\.(?:v_proj|self\.value)\.(weight|bias)", lambda i, j, p: (f"layers.{i}.blocks.{j}.attn.qkv.{p}", 2)),
    (_BLK + r"attention\.(?:o_proj|output\.dense)\.(weight|bias)", lambda i, j, p: f"layers.{i}.blocks.{j}.attn.proj.{p}"),
    (_BLK + r"attention\.(?:relative_position_bias|self)\.relative_position_bias_table",
     lambda i, j: f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"),
    (_BLK + r"attention\.(?:relative_position_bias|self)\.relative_position_index",
     lambda i, j: f"layers.{i}.blocks.{j}.attn.relative_position_index"),
    (_BLK + r"(?:mlp\.fc1|intermediate\.dense)\.(weight|bias)", lambda i, j, p: f"layers.{i}.blocks.{j}.mlp.fc1.{p}"),
    (_BLK + r"(?:mlp\.fc2|output\.dense)\.(weight|bias)", lambda i, j, p: f"layers.{i}.blocks.{j}.mlp.fc2.{p}"),
    (r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)",
     lambda i, m, p: f"layers.{i}.downsample.{m}.{p}"),
    (r"layernorm\.(weight|bias)", lambda p: f"norm.{p}"),
]
_MFD = {"diff_convs": "conv{}", "diff_bns": "bn{}", "weight_convs": "weight_{}", "weight_bns": "wbn{}"}


def _head_key(model: MDHR, key: str) -> str | None:
    names = [r.official for r in model.local.spec.regions]
    rules = [
        (r"static\.(.+)", lambda s: f"global_linear.{s}"),
        (r"mfd\.(diff_convs|diff_bns|weight_convs|weight_bns)\.(\d)\.(.+)",
         lambda m, i, s: f"MFD.{_MFD[m].format(int(i) + 1)}.{s}"),
        (r"mfd\.weight_fuse\.(.+)", lambda s: f"MFD.weight.{s}"),
        (r"mfd\.proj\.(.+)", lambda s: f"MFD.convcat.{s}"),
        (r"mfd\.proj_bn\.(.+)", lambda s: f"MFD.bn.{s}"),
        (r"local\.region_blocks\.(\d+)\.(.+)", lambda r, s: f"LRM.{names[int(r)]}_linear.{s}"),
        (r"local\.sub_heads\.(\d+)\.(.+)", lambda r, s: f"LRM.{names[int(r)]}_fc.{s}"),
        (r"local\.au_blocks\.(\d+)\.(.+)", lambda n, s: f"LRM.class_linears.{n}.{s}"),
        (r"cross\.linear\.weight", lambda: "CRM.gat.linear.weight"),
        (r"cross\.score_src", lambda: "CRM.gat.scoring_fn_source"),
        (r"cross\.score_dst", lambda: "CRM.gat.scoring_fn_target"),
        (r"cross\.bias", lambda: "CRM.gat.bias"),
        (r"temporal\.convs\.(\d+)\.(.+)", lambda n, s: f"TCN.temporal_cnn.{n}.{s}"),
        (r"temporal\.bn\.(.+)", lambda s: f"TCN.bn.{s}"),
        (r"classifier\.sc", lambda: "node_classifier.sc"),
    ]
    for pat, fn in rules:
        m = re.fullmatch(pat, key)
        if m:
            return fn(*m.groups())
    return None


def official_key_map(model: MDHR) -> dict[str, tuple[str, int | None]]:
    """``{aufer state_dict key: (official key, part)}`` for a ResNet-50 or Swin-B MDHR; ``part`` is the q/k/v
    index (0/1/2) of a Swin ``attn.qkv`` row block, else None. Every aufer tensor has exactly one entry.

    Raises:
        ValueError: for the EfficientNet-Lite variant (no official counterpart) or a key without a rule.
    """
    trunk = model.backbone
    if isinstance(trunk, HFResNetTrunk):
        rules = _RESNET_RULES
    elif isinstance(trunk, HFSwinTrunk):
        rules = _SWIN_RULES
    else:
        raise ValueError("only the ResNet-50 and Swin-B MDHR have official checkpoints")
    out: dict[str, tuple[str, int | None]] = {}
    for key in model.state_dict():
        if key.startswith("backbone.net."):
            sub = key[len("backbone.net."):]
            hit = next(((re.fullmatch(p, sub), fn) for p, fn in rules if re.fullmatch(p, sub)), None)
            if hit is None:
                raise ValueError(f"no official name for backbone tensor {key!r}")
            val = hit[1](*hit[0].groups())
            name, part = val if isinstance(val, tuple) else (val, None)
            out[key] = ("Backbone." + name, part)
        else:
            name = _head_key(model, key)
            if name is None:
                raise ValueError(f"no official name for tensor {key!r}")
            out[key] = (name, None)
    return out


def _swin_constants(trunk: HFSwinTrunk) -> dict[str, torch.Tensor]:
    """The official Swin's non-learned buffers, from the window configuration: ``relative_position_index`` of
    every block and ``attn_mask`` of every shifted block (window clamped to the resolution as the official
    ``SwinTransformerBlock``)."""
    cfg = trunk.net.config
    res0 = int(cfg.image_size) // int(cfg.patch_size)
    out = {}
    for i, depth in enumerate(cfg.depths):
        res, ws = res0 // 2 ** i, int(cfg.window_size)
        shift = ws // 2
        if res <= ws:
            ws, shift = res, 0
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        index = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
        idx = torch.arange(res)
        reg = (idx >= res - ws).long() + (idx >= res - shift).long()
        img = (reg[:, None] * 3 + reg[None, :]).view(res // ws, ws, res // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
        mask = torch.where(img[:, None, :] != img[:, :, None], -100.0, 0.0)
        for j in range(depth):
            out[f"Backbone.layers.{i}.blocks.{j}.attn.relative_position_index"] = index.clone()
            if j % 2 == 1 and shift > 0:
                out[f"Backbone.layers.{i}.blocks.{j}.attn_mask"] = mask.clone()
    return out


def _unwrap(state_dict: Mapping[str, Any] | str | Path) -> dict[str, torch.Tensor]:
    return read_official_tensors(state_dict, "the official train.py")  # {'epoch', 'state_dict', 'optimizer'}


def load_official_state_dict(model: MDHR, state_dict: Mapping[str, Any] | str | Path) -> MDHR:
    """Load a checkpoint of the official code into ``model`` (in place; returns it).

    Args:
        state_dict: the official ``MDHR.state_dict()`` (official module names, torchvision-layout ResNet or
            Microsoft Swin keys with fused ``qkv``), optionally wrapped as the official ``train.py`` saves it
            (``{"state_dict": ...}``) and/or with DataParallel's ``module.`` prefix; or the path of such a
            ``.pth`` file, read with ``torch.load(weights_only=True)`` (tensors only, no code).

    Raises:
        aufer.models.CheckpointError (a ValueError): a missing or unreadable file; naming the keys, for a
            missing official tensor, a shape mismatch, an unexpected key, or a Swin window buffer that differs
            from the one this architecture computes.
    """
    if not model.is_official:
        raise ValueError("official MDHR checkpoints exist only for the full model (the default ablation switches), "
                         f"not for {model.ablation}")
    sd = _unwrap(state_dict)
    kmap = official_key_map(model)
    own = model.state_dict()
    new, used, missing, bad = {}, set(), [], []
    for akey, (okey, part) in kmap.items():
        if okey not in sd:
            missing.append(okey)
            continue
        t = sd[okey]
        used.add(okey)
        if part is not None:
            t = t.chunk(3, 0)[part]
        if tuple(t.shape) != tuple(own[akey].shape):
            bad.append(f"{okey} {tuple(t.shape)} → {akey} {tuple(own[akey].shape)}")
            continue
        new[akey] = t
    consts = _swin_constants(model.backbone) if isinstance(model.backbone, HFSwinTrunk) else {}
    extra = []
    for okey in set(sd) - used:
        if okey in consts:
            if not torch.equal(sd[okey].to(consts[okey].dtype), consts[okey]):
                bad.append(f"{okey} differs from this window configuration")
        else:
            extra.append(okey)
    if missing or bad or extra:
        raise CheckpointError("official MDHR checkpoint does not fit (wrong --dataset or --backbone?): "
                         + "; ".join(f"{what}: {', '.join(sorted(v)[:8])}{' ...' if len(v) > 8 else ''}"
                                     for what, v in (("missing", missing), ("shape", bad), ("unexpected", extra)) if v))
    model.load_state_dict(new, strict=True)
    return model


def from_official_state_dict(state_dict: Mapping[str, Any] | str | Path, dataset: str, backbone: str,
                             **model_options) -> MDHR:
    """An aufer MDHR holding the weights of a checkpoint saved by the official code.

    Args:
        state_dict: see :func:`load_official_state_dict` (a state dict or a ``.pth`` path).
        dataset: ``"BP4D"`` or ``"DISFA"``.
        backbone: ``"resnet50"`` (official ``resnet``) or ``"swin_b"`` (official ``swin_transformer``).
        model_options: further :func:`mdhr` arguments (``k``, ``input_size``, ...); the backbone is built offline
            without pretrained weights (they come from the checkpoint).

    Example::

        model = from_official_state_dict("best_model.pth", "BP4D", "resnet50").eval()
    """
    ds, bb = dataset_name(dataset), backbone_name(backbone)
    if bb not in HF_KIND:
        raise ValueError(f"the official code has no {bb!r} backbone (resnet50 or swin_b)")
    model_options.setdefault("pretrained", False)
    model = create_model(f"mdhr.{ds.lower()}_{bb}", **model_options)
    return load_official_state_dict(model, state_dict)


def to_official_state_dict(model: MDHR) -> dict[str, torch.Tensor]:
    """The model's tensors under the official names and layout (q/k/v fused back into ``qkv``; Swin's
    ``relative_position_index`` / ``attn_mask`` buffers recomputed), loadable by the official ``MDHR``."""
    if not model.is_official:
        raise ValueError("official MDHR checkpoints exist only for the full model (the default ablation switches), "
                         f"not for {model.ablation}")
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    for akey, (okey, part) in official_key_map(model).items():
        if part is None:
            out[okey] = sd[akey].detach().clone()
        else:
            parts.setdefault(okey, {})[part] = sd[akey].detach()
            if len(parts[okey]) == 3:
                out[okey] = torch.cat([parts[okey][i] for i in range(3)])
    if isinstance(model.backbone, HFSwinTrunk):
        for k, v in _swin_constants(model.backbone).items():
            out.setdefault(k, v)
    return out


def load_official_backbone(model: MDHR, state_dict: Mapping[str, Any] | str | Path) -> MDHR:
    """Initialise the trunk from the ImageNet file the official code starts from (``resnet50-19c8e357.pth``,
    torchvision layout, or ``swin_base_patch4_window7_224.pth`` with its ``{"model": ...}`` wrapper); its
    classifier (``fc.*`` / ``head.*``) is ignored. Only the backbone changes; returns ``model``.

    Raises:
        ValueError: for a missing tensor or a shape mismatch.
    """
    sd = state_dict
    if isinstance(sd, (str, Path)):
        sd = torch.load(sd, map_location="cpu", weights_only=True)
    if "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]
    sd = {k: v for k, v in sd.items() if not k.startswith(("fc.", "head."))}
    consts = _swin_constants(model.backbone) if isinstance(model.backbone, HFSwinTrunk) else {}
    full = {f"Backbone.{k}": v for k, v in sd.items()}
    kmap = {a: o for a, o in official_key_map(model).items() if a.startswith("backbone.")}
    own = model.state_dict()
    new, problems = {}, []
    for akey, (okey, part) in kmap.items():
        if okey not in full:
            if akey.endswith("num_batches_tracked"):  # old torchvision files have none
                continue
            problems.append(f"missing {okey[9:]}")
            continue
        t = full[okey] if part is None else full[okey].chunk(3, 0)[part]
        if tuple(t.shape) != tuple(own[akey].shape):
            problems.append(f"shape {okey[9:]} {tuple(t.shape)}")
        new[akey] = t
    unknown = sorted(set(full) - {o for o, _ in kmap.values()} - set(consts))
    if problems or unknown:
        raise ValueError("ImageNet backbone file does not fit: " + ", ".join(problems[:8] + [f"unexpected {k[9:]}" for k in unknown[:8]]))
    model.load_state_dict(new, strict=False)
    return model


def import_official(checkpoint: Path, *, dataset: Literal["BP4D", "DISFA"], backbone: Literal["resnet50", "swin_b"],
                    k: int = 5) -> MDHR:
    """``aufer import mdhr CKPT --dataset BP4D|DISFA --backbone resnet50|swin_b [--k 5]``: the official ``.pth`` as
    an aufer MDHR; ``k`` is the number of frames MFD's temporal average pools (the official default 5)."""
    return from_official_state_dict(checkpoint, dataset, backbone, k=k)


register_importer("mdhr", Importer(import_official, source="official MDHR code (github.com/CVI-SZU/MDHR)",
                                   help="an official MDHR checkpoint (.pth): BP4D or DISFA, ResNet-50 or Swin-B"))
