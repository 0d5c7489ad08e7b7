"""Official SSM checkpoints (github.com/MSA-LMC/SSM, Apache-2.0, commit 978d79a) ⇄ aufer's :class:`~aufer.methods.ssm.model.SSM`.

The official ``Bp4dSSM`` / ``DisfaSSM`` hold OpenAI CLIP's modules under their own names: ``encoder.*`` (the
visual tower: ``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N``
with a fused ``attn.in_proj_weight``, ``ln_post``, ``proj`` as a (width × 512) matrix), ``text_encoder.*`` (the text
transformer without its token table), ``prompt_learner1`` (emotions) / ``prompt_learner2`` (AUs), the temporal
nets (``dfer_temporal_net`` / ``au_temporal_net`` in ``Bp4dSSM``, ``temporal_net`` / ``temporal_net_au`` in
``DisfaSSM``, §9.1 item 3), the heads, ``au_smooth``, the DPM tensors at the top level. The MoE registers the
shared MLP twice (``shared_fc1`` = ``shared_expert.0``, ``shared_fc2`` = ``shared_expert.2``, §9.1 item 2):
both keys are read and must agree.

:func:`official_key_map` names, for every aufer tensor, the official tensor it comes from (and which third of a
fused ``in_proj``); a matrix stored transposed (``proj``, ``text_projection``) is marked. Only tensors are read.
"""

from __future__ import annotations

import pickle
import re
import types
import zipfile
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from aufer.models import CheckpointError, Importer, create_model, register_importer

__all__ = ["PAIRS", "official_key_map", "from_official_state_dict", "to_official_state_dict", "clip_config_from_official",
           "read_official_checkpoint"]

#: ``--pair`` → (AU dataset, number of emotions)
PAIRS = {f"{a}_{e}": (a.upper(), 11 if e == "mafw" else 7) for a in ("bp4d", "disfa") for e in ("dfew", "ferv39k", "mafw")}

_ATT = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
# (aufer regex, official template, part of a fused in_proj or None, transposed)
_CLIP_RULES = [
    (r"visual\.vision_model\.embeddings\.class_embedding", "encoder.class_embedding", None, False),
    (r"visual\.vision_model\.embeddings\.patch_embedding\.weight", "encoder.conv1.weight", None, False),
    (r"visual\.vision_model\.embeddings\.position_embedding\.weight", "encoder.positional_embedding", None, False),
    (r"visual\.vision_model\.pre_layrnorm\.(weight|bias)", "encoder.ln_pre.{0}", None, False),
    (r"visual\.vision_model\.post_layernorm\.(weight|bias)", "encoder.ln_post.{0}", None, False),
    (r"visual\.visual_projection\.weight", "encoder.proj", None, True),
    (r"text_encoder\.text_model\.embeddings\.position_embedding\.weight", "text_encoder.positional_embedding", None, False),
    (r"text_encoder\.text_model\.final_layer_norm\.(weight|bias)", "text_encoder.ln_final.{0}", None, False),
    (r"text_encoder\.text_projection\.weight", "text_encoder.text_projection", None, True),
]
_TOWER = {"visual.vision_model": "encoder", "text_encoder.text_model": "text_encoder"}
_LAYER = re.compile(r"(visual\.vision_model|text_encoder\.text_model)\.encoder\.layers\.(\d+)\.(.+)")
_LAYER_PARTS = [
    (r"self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)", lambda p, wb: (f"attn.in_proj_{wb}", _ATT[p])),
    (r"self_attn\.out_proj\.(weight|bias)", lambda wb: (f"attn.out_proj.{wb}", None)),
    (r"layer_norm1\.(weight|bias)", lambda wb: (f"ln_1.{wb}", None)),
    (r"layer_norm2\.(weight|bias)", lambda wb: (f"ln_2.{wb}", None)),
    (r"mlp\.fc1\.(weight|bias)", lambda wb: (f"mlp.c_fc.{wb}", None)),
    (r"mlp\.fc2\.(weight|bias)", lambda wb: (f"mlp.c_proj.{wb}", None)),
    (r"mlp\.(alpha|shared_fc1\.weight|shared_fc1\.bias|shared_fc2\.weight|shared_fc2\.bias|gate\.weight|gate\.bias)",
     lambda k: (f"mlp.{k}", None)),
    (r"mlp\.private_experts\.(\d+)\.(fc1|fc2)\.(weight|bias)", lambda e, f, wb: (f"mlp.private_experts.{e}.{f}.{wb}", None)),
]
_TEMPORAL = [  # aufer suffix → official suffix, for the expression temporal net
    (r"cls_token|pos_embedding|gate|ln\.weight|ln\.bias", lambda k: k),
    (r"layers\.(\d+)\.attn_norm\.(weight|bias)", lambda i, wb: f"temporal_transformer.layers.{i}.0.fn.norm.{wb}"),
    (r"layers\.(\d+)\.to_qkv\.weight", lambda i: f"temporal_transformer.layers.{i}.0.fn.fn.to_qkv.weight"),
    (r"layers\.(\d+)\.to_out\.(weight|bias)", lambda i, wb: f"temporal_transformer.layers.{i}.0.fn.fn.to_out.0.{wb}"),
    (r"layers\.(\d+)\.ff_norm\.(weight|bias)", lambda i, wb: f"temporal_transformer.layers.{i}.1.fn.norm.{wb}"),
    (r"layers\.(\d+)\.ff\.0\.(weight|bias)", lambda i, wb: f"temporal_transformer.layers.{i}.1.fn.fn.net.0.{wb}"),
    (r"layers\.(\d+)\.ff\.2\.(weight|bias)", lambda i, wb: f"temporal_transformer.layers.{i}.1.fn.fn.net.3.{wb}"),
]
_TOP = {"au_head.weight": "au_head.weight", "au_head.bias": "au_head.bias", "expr_head.weight": "dfer_head.weight",
        "expr_head.bias": "dfer_head.bias", "au_smooth.conv.weight": "au_smooth.weight",
        "dpm.delta_map1": "delta_map1", "dpm.delta_map2": "delta_map2", "dpm.alpha": "alpha", "dpm.beta": "beta",
        "dpm.init_map": "init_map", "dpm.row_targets_au2emo": "row_targets_au2emo",
        "dpm.row_targets_emo2au": "row_targets_emo2au"}
_ALIASES = {"mlp.shared_fc1.": "mlp.shared_expert.0.", "mlp.shared_fc2.": "mlp.shared_expert.2."}


def _temporal_names(au_dataset: str) -> tuple[str, str]:
    return ("dfer_temporal_net", "au_temporal_net") if au_dataset == "BP4D" else ("temporal_net", "temporal_net_au")


def official_key_map(model) -> dict[str, tuple[str, int | None, bool]]:
    """For every tensor of an official-architecture aufer SSM (CLIP vision and text towers): ``{aufer key:
    (official key, third of a fused in_proj or None, stored transposed)}``.

    Raises:
        ValueError: a model with a Lite or MiniLM tower (no official checkpoint exists for it), or a tensor
            without an official counterpart.
    """
    if model.config.get("vision") != "clip" or model.config.get("text") != "clip":
        raise ValueError("official SSM checkpoints exist only for the CLIP vision and text towers, not for "
                         f"vision={model.config.get('vision')!r}, text={model.config.get('text')!r}")
    if not (model.tsp and model.use_dpm):
        raise ValueError("official SSM checkpoints exist only for the full model (tsp and dpm on)")
    expr_t, au_t = _temporal_names(model.au_dataset)
    out: dict[str, tuple[str, int | None, bool]] = {}
    for key in model.state_dict():
        out[key] = _official_key(key, expr_t, au_t)
    return out


def _official_key(key: str, expr_t: str, au_t: str) -> tuple[str, int | None, bool]:
    for pat, tmpl, part, tr in _CLIP_RULES:
        m = re.fullmatch(pat, key)
        if m:
            return tmpl.format(*m.groups()), part, tr
    m = _LAYER.fullmatch(key)
    if m:
        tower, i, rest = m.groups()
        for pat, fn in _LAYER_PARTS:
            mm = re.fullmatch(pat, rest)
            if mm:
                name, part = fn(*mm.groups())
                return f"{_TOWER[tower]}.transformer.resblocks.{i}.{name}", part, False
    for learner, official in (("prompt_learner_expr", "prompt_learner1"), ("prompt_learner_au", "prompt_learner2")):
        if key.startswith(learner + "."):
            return official + key[len(learner):], None, False
    if key.startswith("expr_temporal."):
        rest = key[len("expr_temporal."):]
        for pat, fn in _TEMPORAL:
            mm = re.fullmatch(pat, rest)
            if mm:
                return f"{expr_t}.{fn(*mm.groups()) if mm.groups() else fn(rest)}", None, False
    m = re.fullmatch(r"au_temporal\.layers\.(\d+)\.(.+)", key)
    if m:
        return f"{au_t}.layers.{m.group(1)}.{m.group(2)}", None, False
    if key in _TOP:
        return _TOP[key], None, False
    raise ValueError(f"aufer SSM tensor {key!r} has no official counterpart")


class _TensorsOnly(pickle.Unpickler):
    """Unpickles torch's tensor storage records and plain containers; any other class (e.g. the official
    ``RecorderMeter`` saved beside the weights) becomes an inert placeholder — no code from the file runs."""

    _ALLOWED = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                ("torch._utils", "_rebuild_parameter"), ("torch", "FloatStorage"), ("torch", "HalfStorage"),
                ("torch", "BFloat16Storage"), ("torch", "LongStorage"), ("torch", "IntStorage"),
                ("torch", "BoolStorage"), ("torch", "ByteStorage"), ("torch", "DoubleStorage")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED or (module == "torch" and name.endswith("Storage")):
            return super().find_class(module, name)
        # any arguments (numpy's array and dtype rebuilders in the recorder, copyreg's reconstructor) are ignored
        return type(name, (), {"__init__": lambda self, *a, **k: None, "__setstate__": lambda self, state: None,
                               "__module__": "aufer.placeholder"})


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint file: ``torch.load(weights_only=True)``; if the file also holds
    the official ``RecorderMeter`` object (its ``checkpoint.pth`` does), the tensors only, through an unpickler
    that builds no class but tensors and plain containers. Unwraps ``{"state_dict": ...}`` and DataParallel's
    ``module.`` prefix.

    Raises:
        CheckpointError: a missing, truncated or unreadable file, or one without a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; pass a .pth saved by the official SSM code")
    try:
        sd: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001  (zip/pickle errors of a damaged file, or a non-tensor global)
        if not (isinstance(first, pickle.UnpicklingError) and zipfile.is_zipfile(path)):
            raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({first.__class__.__name__}); "
                                  "is the file complete?") from None
        try:
            mod = types.SimpleNamespace(Unpickler=_TensorsOnly, load=pickle.load, __name__="aufer_tensors_only")
            sd = torch.load(path, map_location="cpu", weights_only=False, pickle_module=mod)
        except Exception as e:  # noqa: BLE001  (a damaged archive)
            raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({e.__class__.__name__}); "
                                  "is the file complete?") from None
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: holds no state dict (a mapping of tensor names to tensors)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def clip_config_from_official(sd: Mapping[str, torch.Tensor]) -> dict:
    """The ``CLIPConfig`` dict of the towers in an official state dict, read from the tensor shapes as OpenAI's
    ``build_model`` does (vision width, layers, patch, grid; text width, layers, context length; heads =
    width / 64; projection width). The token table is not in the checkpoint: the vocabulary is CLIP's 49408.

    Raises:
        CheckpointError: a state dict without the CLIP towers.
    """
    try:
        conv = sd["encoder.conv1.weight"]
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        grid = round((sd["encoder.positional_embedding"].shape[0] - 1) ** 0.5)
        v_layers = len({k.split(".")[3] for k in sd if k.startswith("encoder.transformer.resblocks.")})
        t_width = int(sd["text_encoder.ln_final.weight"].shape[0])
        t_layers = len({k.split(".")[3] for k in sd if k.startswith("text_encoder.transformer.resblocks.")})
        ctx = int(sd["text_encoder.positional_embedding"].shape[0])
        proj = int(sd["text_encoder.text_projection"].shape[1])
    except KeyError as e:
        raise CheckpointError(f"not an official SSM state dict: no {e.args[0]!r} (the CLIP towers)") from None
    t_mlp, v_mlp = _mlp_width(sd, "text_encoder"), _mlp_width(sd, "encoder")
    return {"projection_dim": proj,
            "text_config": {"hidden_size": t_width, "intermediate_size": t_mlp, "num_attention_heads": t_width // 64,
                            "num_hidden_layers": t_layers, "max_position_embeddings": ctx, "vocab_size": 49408,
                            "hidden_act": "quick_gelu", "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
            "vision_config": {"hidden_size": width, "intermediate_size": v_mlp, "num_attention_heads": width // 64,
                              "num_hidden_layers": v_layers, "image_size": patch * grid, "patch_size": patch,
                              "hidden_act": "quick_gelu"}}


def _mlp_width(sd: Mapping[str, torch.Tensor], tower: str) -> int:
    """The MLP width of a tower's blocks: from the first block with a plain MLP (``mlp.c_fc``), else from a MoE
    block's shared expert (its first layer, ``mlp.shared_expert.0`` or its alias ``mlp.shared_fc1``) — a tower may
    carry the MoE FFN in every block, so block 0 need not have ``mlp.c_fc``.

    Raises:
        CheckpointError: no block of the tower has an MLP.
    """
    head = f"{tower}.transformer.resblocks."
    order = sorted({int(k[len(head):].split(".")[0]) for k in sd if k.startswith(head)})
    for suffix in ("mlp.c_fc.weight", "mlp.shared_expert.0.weight", "mlp.shared_fc1.weight"):
        for i in order:
            w = sd.get(f"{head}{i}.{suffix}")
            if w is not None:
                return int(w.shape[0])
    raise CheckpointError(f"not an official SSM state dict: no MLP in the {tower} blocks ({head}N.mlp.c_fc or "
                          "mlp.shared_expert.0)")


def from_official_state_dict(state_dict: Mapping[str, Any] | str | Path, pair: str, moe_act: str = "gelu"):
    """An aufer SSM holding the weights of an official checkpoint.

    Args:
        state_dict: the official model's ``state_dict()`` (optionally ``{"state_dict": ...}`` and/or with
            ``module.``), or the path of a ``.pth`` (:func:`read_official_checkpoint`).
        pair: ``bp4d_dfew``, ``bp4d_ferv39k``, ``bp4d_mafw``, ``disfa_dfew``, ``disfa_ferv39k`` or ``disfa_mafw``
            (the AU dataset and the 7 or 11 emotions; the tower sizes come from the tensor shapes).
        moe_act: the MoE shared expert's activation (the official behaviour: exact ``gelu``).

    Raises:
        CheckpointError (a ValueError): an unknown pair, an unreadable file, a missing official tensor, a
            shape mismatch, aliased MoE keys that disagree, or official keys left over (naming them).
    """
    if pair not in PAIRS:
        raise CheckpointError(f"unknown pair {pair!r}; expected one of {', '.join(PAIRS)}")
    sd = read_official_checkpoint(state_dict) if isinstance(state_dict, (str, Path)) else dict(state_dict)
    if isinstance(sd.get("state_dict"), Mapping):
        sd = dict(sd["state_dict"])
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
    ds, n_emo = PAIRS[pair]
    cfg = clip_config_from_official(sd)
    name = f"ssm.{ds.lower()}{'_mafw' if n_emo == 11 else ''}_clip"
    moe_layers = len({k.split(".")[3] for k in sd if re.match(r"encoder\.transformer\.resblocks\.\d+\.mlp\.gate\.", k)})
    model = create_model(name, pretrained=False, clip_config=cfg, moe_layers=moe_layers, moe_act=moe_act,
                         input_size=cfg["vision_config"]["image_size"])
    own, new, used, missing, bad = model.state_dict(), {}, set(), [], []
    for akey, (okey, part, tr) in official_key_map(model).items():
        if okey not in sd:
            missing.append(okey)
            continue
        t = sd[okey]
        used.add(okey)
        t = t.chunk(3, 0)[part] if part is not None else t
        t = t.t() if tr else t
        if tuple(t.shape) != tuple(own[akey].shape):
            bad.append(f"{okey} {tuple(t.shape)} → {akey} {tuple(own[akey].shape)}")
            continue
        new[akey] = t.to(own[akey].dtype)
    for okey in [k for k in sd if k not in used]:
        for short, alias in _ALIASES.items():
            if alias in okey and okey.replace(alias, short) in used:
                if not torch.equal(sd[okey], sd[okey.replace(alias, short)]):
                    bad.append(f"{okey} differs from its alias {okey.replace(alias, short)}")
                used.add(okey)
    left = sorted(set(sd) - used)
    if missing or bad or left:
        parts = [f"missing {len(missing)} official tensors (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"shape mismatches: {'; '.join(bad[:3])}" if bad else "",
                 f"unexpected keys: {', '.join(left[:5])}" if left else ""]
        raise CheckpointError(f"not a {pair} SSM checkpoint of the official code: " + "; ".join(p for p in parts if p))
    model.load_state_dict(new, strict=True)
    return model


def to_official_state_dict(model) -> dict[str, torch.Tensor]:
    """The official code's state dict of an aufer SSM (the inverse of :func:`from_official_state_dict`, with the
    aliased MoE keys written twice, as the official model registers them)."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list] = {}
    for akey, (okey, part, tr) in official_key_map(model).items():
        t = own[akey].t() if tr else own[akey]
        if part is None:
            out[okey] = t.clone()
        else:
            fused.setdefault(okey, [None, None, None])[part] = t
    out.update({k: torch.cat(v, 0) for k, v in fused.items()})
    for okey in list(out):
        for short, alias in _ALIASES.items():
            if short in okey:
                out[okey.replace(short, alias)] = out[okey].clone()
    return out


def import_official(checkpoint: Path, *, pair: Literal[tuple(PAIRS)]):
    """``aufer import ssm CKPT --pair PAIR``: :func:`from_official_state_dict` of an official ``.pth``."""
    return from_official_state_dict(checkpoint, pair)


register_importer("ssm", Importer(import_official, source="official SSM code (github.com/MSA-LMC/SSM)",
                                  help="an official SSM checkpoint (.pth) of one dataset pair"))
