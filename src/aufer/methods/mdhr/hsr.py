"""MDHR's hierarchical spatio-temporal relationship modelling (HSR) and its heads.

Wang, Song, Luo, Deng, Xie, Shen, "Multi-scale Dynamic and Hierarchical Relationship Modeling for Facial Action
Units Recognition", CVPR 2024 (arXiv 2404.06443), §3.2-3.3, checked against the official code
(github.com/CVI-SZU/MDHR, MIT, commit 3497bed: ``model/model_BP4D.py``, ``model/model_DISFA.py``,
``model/GAT.py``, ``model/utils.py``). aufer's own implementation; the docstring of :mod:`aufer.methods.mdhr.model`
describes the whole model and lists the deviations from the official code.

Shapes: N = B·T frames, h × w the token grid (7 × 7 at 224 px), D the feature size (512), A the AUs, R the
regions.

* :class:`LinearBlock` -- Linear → BatchNorm1d (statistics over frames × tokens) → ReLU.
* :class:`LocalRelations` -- HSR stage 1 (Eq. 7-8): overlapping up / mid / low slices of the token grid, the
  per-region transform (BP4D only), the AU-specific feature extractors and the auxiliary AU-combination heads.
* :class:`CrossRegionGAT` -- HSR stage 2 (Eq. 9): adjacency between AUs of different regions gated by the
  predicted activity of the target AU, and one graph-attention layer; :func:`edge_mask` gives the other edge
  strategies of the paper's Table 5 (ablations).
* :class:`PerAUTemporalConv` -- the per-AU depthwise temporal convolution (§3.3, "TCN").
* :class:`SimilarityClassifier` -- cosine similarity with a learned, non-negative vector per AU (from
  ME-GraphAU), giving p ∈ [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Region", "RegionSpec", "REGION_SPECS", "EDGE_MODES", "region_rows", "cross_region_mask", "edge_mask",
           "activity_bits",
           "LinearBlock", "LocalRelations", "CrossRegionGAT", "PerAUTemporalConv", "SimilarityClassifier"]


# ------------------------------------------------------------------------------------------------ regions
@dataclass(frozen=True)
class Region:
    """One facial region of HSR stage 1.

    Attributes:
        name: aufer's name of the region.
        rows: which slice of Eq. 7 it reads: ``"up"``, ``"mid"`` or ``"low"``.
        aus: its AUs, in bit order of the AU-combination code (most significant bit first).
        official: the prefix of its modules in the official code (``up`` → ``LRM.up_linear``, ``LRM.up_fc``).
    """

    name: str
    rows: str
    aus: tuple[int, ...]
    official: str

    @property
    def n_classes(self) -> int:
        """Classes of the auxiliary AU-combination head: 2^(number of AUs)."""
        return 2 ** len(self.aus)


@dataclass(frozen=True)
class RegionSpec:
    """A dataset's region ↔ AU assignment.

    Attributes:
        regions: the regions, in the official order of the auxiliary heads.
        transform: whether each region slice first goes through its own :class:`LinearBlock` (BP4D) or the AU
            extractors read the raw slice (DISFA).
    """

    regions: tuple[Region, ...]
    transform: bool


# Source: the official code, LocalRelationshipModeling of model_BP4D.py / model_DISFA.py (which AU extractor
# reads which slice) and utils.calculate_adjmask_* (bit order); the bit order is confirmed by the released
# *_sub_label_fold*.txt files (methods.md §6.2). BP4D's two low regions read the same slice through different
# LinearBlocks.
REGION_SPECS: dict[str, RegionSpec] = {
    "BP4D": RegionSpec((Region("up", "up", (1, 2, 4, 7), "up"), Region("mid", "mid", (6,), "mid"),
                        Region("low1", "low", (12, 14, 15), "down1"),
                        Region("low2", "low", (10, 17, 23, 24), "down2")), transform=True),
    "DISFA": RegionSpec((Region("up", "up", (1, 2, 4), "up"), Region("mid", "mid", (6, 9), "mid"),
                         Region("low", "low", (12, 25, 26), "down")), transform=False),
}


def region_rows(h: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the three overlapping slices of Eq. 7 on a grid of ``h`` rows:
    up = ``[0, 3h/7)``, mid = ``[2h/7, 5h/7)``, low = ``[4h/7, h)``, with starts rounded down and stops up.

    At h = 7 (224 px) this is the official ``0:3``, ``2:5``, ``4:7``; other sizes are an aufer extension (the
    official code asserts a 7 × 7 grid).
    """
    if h < 1:
        raise ValueError(f"the token grid needs at least one row, got {h}")
    return {"up": (0, -(-3 * h // 7)), "mid": (2 * h // 7, -(-5 * h // 7)), "low": (4 * h // 7, h)}


def cross_region_mask(groups: Sequence[Sequence[int]], n: int) -> torch.Tensor:
    """The fixed cross-region connectivity C ``(n, n)`` of stage 2: 1 between AUs of different regions, 0 within a
    region and on the diagonal. ``groups`` holds each region's AU column indices (each AU in exactly one region;
    BP4D's low1 and low2 are different regions). Equals the matrices hard-coded in the official
    ``CrossregionRelationshipModeling`` (methods.md §6.2)."""
    region = [-1] * n
    for r, cols in enumerate(groups):
        for c in cols:
            region[c] = r
    if -1 in region:
        raise ValueError(f"AU columns {[j for j in range(n) if region[j] < 0]} are in no region")
    return torch.tensor([[float(ri != rj) for rj in region] for ri in region])


#: the edge strategies of :class:`CrossRegionGAT` (paper Table 5), "none" = no cross-region stage (Table 3 rows
#: without CRM); "activated" is the official one.
EDGE_MODES = ("activated", "cross", "local", "full", "none")


def edge_mask(groups: Sequence[Sequence[int]], n: int, mode: str = "activated") -> torch.Tensor:
    """The ``(n, n)`` connectivity (diagonal excluded) of an edge strategy of the paper's Table 5:

    * ``"activated"`` (official, "Aux + connect cross-regional activated AUs") and ``"cross"`` ("Aux +
      cross-regional fully-connected"): :func:`cross_region_mask`, 1 between AUs of different regions;
      ``"activated"`` is then gated by the target's activity (:meth:`CrossRegionGAT.adjacency`), ``"cross"`` not;
    * ``"local"`` ("Aux + locally-connected"): 1 between different AUs of the same region (the complement of
      ``"cross"``; BP4D's low1 and low2 are different regions, as in the official cross-region mask);
    * ``"full"`` ("fully-connected", with or without Aux): 1 between any two different AUs.

    The gating of ``"activated"`` only is the paper's reading; that the other three are not gated is aufer's
    reading of the row names (methods.md §6.5 gives only the names).
    """
    cross = cross_region_mask(groups, n)
    off = 1.0 - torch.eye(n)
    if mode in ("activated", "cross"):
        return cross
    if mode == "local":
        return off - cross
    if mode == "full":
        return off
    raise ValueError(f"edge mode {mode!r}: expected one of {', '.join(m for m in EDGE_MODES if m != 'none')}")


def activity_bits(sub_logits: Sequence[torch.Tensor], groups: Sequence[Sequence[int]], n: int) -> torch.Tensor:
    """Node activities ``(N, n)`` in {0, 1}: for each region the bits of ``argmax`` of its AU-combination logits
    ``(N, 2^k)`` (most significant bit = the region's first AU) placed in its AU columns. No gradient (the
    official code detaches the logits; ``argmax`` of the softmax equals ``argmax`` of the logits)."""
    out = sub_logits[0].new_zeros(sub_logits[0].shape[0], n)
    for logits, cols in zip(sub_logits, groups):
        k = len(cols)
        code = logits.detach().argmax(-1)
        shifts = torch.arange(k - 1, -1, -1, device=code.device)
        out[:, list(cols)] = ((code[:, None] >> shifts) & 1).to(out.dtype)
    return out


# ------------------------------------------------------------------------------------------------ modules
class LinearBlock(nn.Module):
    """Linear → BatchNorm1d → ReLU on tokens: ``(N, L, C_in)`` → ``(N, L, C_out)``; the BatchNorm normalises each
    output channel over frames × tokens (methods.md §9.2.3). Init as the official code: weight ~ N(0, 2/C_out),
    default bias, BatchNorm 1 / 0. (The official block also has a Dropout of p = 0 before the Linear; it is the
    identity and is left out.)"""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.fc(x).transpose(1, 2))).transpose(1, 2)


class LocalRelations(nn.Module):
    """HSR stage 1, within-region modelling (paper Eq. 7-8; official ``LocalRelationshipModeling``).

    ``G`` ``(N, h, w, D)`` is sliced by rows into the overlapping up / mid / low regions (:func:`region_rows`);
    each region r is transformed by its own :class:`LinearBlock` (BP4D; DISFA reads the raw slice),
    ``R_r (N, L_r, D)``. The AU-specific feature extractor (AFE) of AU n is a :class:`LinearBlock` on its
    region's ``R_r`` followed by the mean over the region's tokens (the paper's "1×1 conv + GAP"): ``V (N, A,
    D)``. The auxiliary branch classifies each region's AU combination: ``P_r = Linear(mean_tokens(R_r))``
    ``(N, 2^k_r)`` (trained with the softmax cross-entropy of :func:`aufer.methods.mdhr.loss.sub_loss`). Init: PyTorch
    defaults for the heads, :class:`LinearBlock`'s for the blocks (as the official code).

    Ablations (paper Table 3): ``afe=False`` drops the extractors: every AU gets the same feature, the mean of
    ``G`` over all ``h·w`` tokens, ``V = mean_tokens(G)`` repeated A times (the "Backbone" / "+MFD" rows, which
    have no HSR; the paper does not describe their head: aufer's reading is global average pooling into the same
    similarity classifier, whose per-AU vectors are then the only AU-specific part). ``aux=False`` drops the
    AU-combination heads (no logits: an empty list). The region transforms are built only when something reads
    them (an extractor or a head).

    Args:
        aus: the model's AU order (the output order of ``V``).
        spec: the dataset's :class:`RegionSpec`.
        dim: D.
        afe: build the AU-specific feature extractors (official: True).
        aux: build the auxiliary AU-combination heads (official: True).
    """

    def __init__(self, aus: Sequence[int], spec: RegionSpec, dim: int, afe: bool = True, aux: bool = True):
        super().__init__()
        self.aus = tuple(aus)
        self.spec = spec
        col = {a: j for j, a in enumerate(self.aus)}
        missing = [a for r in spec.regions for a in r.aus if a not in col]
        if missing:
            raise ValueError(f"region AUs {missing} are not among the model's AUs {self.aus}")
        #: each region's AU column indices, in bit order
        self.groups: tuple[tuple[int, ...], ...] = tuple(tuple(col[a] for a in r.aus) for r in spec.regions)
        self.region_of = [next(i for i, g in enumerate(self.groups) if j in g) for j in range(len(self.aus))]
        self.afe, self.aux = bool(afe), bool(aux)
        self.region_blocks = (nn.ModuleList(LinearBlock(dim, dim) for _ in spec.regions)
                              if spec.transform and (self.afe or self.aux) else None)
        self.sub_heads = nn.ModuleList(nn.Linear(dim, r.n_classes) for r in spec.regions) if self.aux else None
        self.au_blocks = nn.ModuleList(LinearBlock(dim, dim) for _ in self.aus) if self.afe else None

    def slices(self, g: torch.Tensor) -> list[torch.Tensor]:
        """Each region's token slice ``(N, L_r, D)`` of ``g`` ``(N, h, w, D)`` (Eq. 7)."""
        n, h, w, d = g.shape
        rows = region_rows(h)
        return [g[:, rows[r.rows][0]:rows[r.rows][1]].reshape(n, -1, d) for r in self.spec.regions]

    def forward(self, g: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(N, h, w, D)`` → (list of R AU-combination logits ``(N, 2^k_r)``, empty without the auxiliary
        branch; AU features ``(N, A, D)``)."""
        if not (self.afe or self.aux):
            return [], g.mean((1, 2))[:, None].expand(-1, len(self.aus), -1)
        regions = self.slices(g)
        if self.region_blocks is not None:
            regions = [blk(x) for blk, x in zip(self.region_blocks, regions)]
        sub = [head(x.mean(1)) for head, x in zip(self.sub_heads, regions)] if self.aux else []
        if not self.afe:
            return sub, g.mean((1, 2))[:, None].expand(-1, len(self.aus), -1)
        feats = [blk(regions[self.region_of[j]]) for j, blk in enumerate(self.au_blocks)]
        if len({f.shape[1] for f in feats}) == 1:  # stacked, then averaged: the official order of summation
            return sub, torch.stack(feats, 1).mean(-2)
        return sub, torch.stack([f.mean(1) for f in feats], 1)  # regions of unequal size (grids other than 7 × 7)


class CrossRegionGAT(nn.Module):
    """HSR stage 2, cross-region modelling (paper Eq. 9; official ``CrossregionRelationshipModeling`` + ``GATConv``
    with one head, no dropout, threshold 0.1, identity residual, bias, ELU).

    ``Adj[b, i, j] = C[i, j] · a[b, j] + I[i, j]`` with C from :func:`cross_region_mask` and a the activities of
    :func:`activity_bits`; with ``gated=False`` (the ablations "cross" / "local" / "full" of :func:`edge_mask`)
    ``Adj = C + I`` for every frame and ``active`` is not read. With ``z = W v``: ``s_ij = LeakyReLU_0.2(q·z_i +
    r·z_j)``, set to −∞ where ``Adj < 0.1``, ``α = softmax_j(s)``, ``v̂_i = ELU(Σ_j α_ij z_j + v_i + b)``.

    Shapes: the mask C ``(A, A)`` (buffer ``cross``, whatever the strategy), ``v`` ``(N, A, D)``, ``active``
    ``(N, A)`` or None when ungated → ``(N, A, D)``. Init as the official code: W, q, r
    xavier-uniform (q, r kept in the official ``(1, 1, D)`` shape, which sets their xavier bound), b = 0.
    """

    def __init__(self, cross: torch.Tensor, dim: int, threshold: float = 0.1, gated: bool = True):
        super().__init__()
        self.register_buffer("cross", cross.float().clone(), persistent=False)
        self.threshold = threshold
        self.gated = bool(gated)
        self.linear = nn.Linear(dim, dim, bias=False)
        self.score_src = nn.Parameter(torch.empty(1, 1, dim))
        self.score_dst = nn.Parameter(torch.empty(1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        for p in (self.linear.weight, self.score_dst, self.score_src):
            nn.init.xavier_uniform_(p)

    def adjacency(self, active: torch.Tensor | None, n: int | None = None) -> torch.Tensor:
        """``(N, A)`` activities → ``(N, A, A)`` adjacency (ungated: ``active`` may be None, then ``n`` frames, 1
        by default; the result is ``C + I`` expanded)."""
        if not self.gated:
            like = self.cross if active is None else active
            eye = torch.eye(self.cross.shape[0], device=like.device, dtype=like.dtype)
            return (self.cross.to(like.dtype) + eye).expand((n or 1) if active is None else active.shape[0], -1, -1)
        if active is None:
            raise ValueError("the activity-gated adjacency needs the activities (the auxiliary branch)")
        eye = torch.eye(self.cross.shape[0], device=active.device, dtype=active.dtype)
        return self.cross.to(active.dtype) * active[:, None, :] + eye

    def forward(self, v: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        z = self.linear(v)
        s_src = (z * self.score_src[0]).sum(-1)  # (N, A): term of node i (rows)
        s_dst = (z * self.score_dst[0]).sum(-1)  # (N, A): term of node j (columns)
        scores = F.leaky_relu(s_src[:, :, None] + s_dst[:, None, :], 0.2)
        adj = self.adjacency(None if active is None else active.to(scores.dtype), v.shape[0])
        adj = adj.to(scores.dtype)
        scores = scores.masked_fill(adj < self.threshold, float("-inf"))
        out = torch.softmax(scores, -1) @ z
        return F.elu(out + v + self.bias)


class PerAUTemporalConv(nn.Module):
    """Per-AU temporal modelling (official ``IndividualTemporalModeling``): for each AU n its own depthwise
    ``Conv1d(D, D, 5, padding=2, groups=D)`` (with bias, PyTorch default init) over the T frames, then
    ``ReLU(BatchNorm1d(A))`` with the AU axis as channels (statistics over frames × features).

    Shapes: ``(B, T, A, D)`` → ``(B, T, A, D)``. The A convolutions run as one grouped convolution (same
    arithmetic; the parameters stay one ``Conv1d`` per AU, as the official checkpoint has them).
    """

    def __init__(self, n_aus: int, dim: int, kernel: int = 5):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim) for _ in range(n_aus))
        self.bn = nn.BatchNorm1d(n_aus)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        b, t, a, d = v.shape
        weight = torch.cat([c.weight for c in self.convs])
        bias = torch.cat([c.bias for c in self.convs])
        c0 = self.convs[0]
        y = F.conv1d(v.permute(0, 2, 3, 1).reshape(b, a * d, t), weight, bias, padding=c0.padding, groups=a * d)
        y = y.reshape(b, a, d, t).permute(0, 3, 1, 2).reshape(b * t, a, d)
        return F.relu(self.bn(y)).reshape(b, t, a, d)


class SimilarityClassifier(nn.Module):
    """``p_n = cos(ReLU(s_n), v_n)`` (official ``NodeClassifier``, from ME-GraphAU): ``(N, A, D)`` → ``(N, A)``.
    The inputs are non-negative (ReLU/ELU outputs after a ReLU), so p ∈ [0, 1]; ``s`` ``(A, D)`` is
    xavier-uniform initialised."""

    def __init__(self, n_aus: int, dim: int):
        super().__init__()
        self.sc = nn.Parameter(torch.empty(n_aus, dim))
        nn.init.xavier_uniform_(self.sc)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        sc = F.normalize(F.relu(self.sc), p=2, dim=-1)
        return (F.normalize(v, p=2, dim=-1) * sc).sum(-1)
