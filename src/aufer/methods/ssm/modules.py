"""SSM's building blocks: the MoE FFN of the vision tower, DPM, the two temporal nets and the frame-pair smoother.

SSM — Structured Semantic Mapping (Li et al., IEEE TAFFC 2026; arXiv 2604.10541). Specified in methods.md §3.1
from the official code (github.com/MSA-LMC/SSM, Apache-2.0, commit 978d79a: ``ssm/models/moe.py``,
``ssm/models/temporal.py``, ``ssm/models/bp4d.py::_compute_maps``) and checked against it (§9.1). The names of
the official code are kept where a reader compares (``shared_fc1``, ``private_experts``, ``gate``, ``alpha``,
``delta_map1``, ``cls_token``, ``pos_embedding``, ``to_q``, ``channel_gate`` ...);
:mod:`aufer.methods.ssm.official` maps the checkpoint keys.

Shapes: N tokens or frames, D width, B clips, T frames, E emotions, A AUs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LightMLPExpert", "MoEFFN", "DynamicPriorMapping", "TemporalTransformerCls", "LocalFrameAttention",
           "TemporalTransformerAll", "PairSmoother", "TanhGELU", "NEUTRAL"]

#: index of ``neutral`` in SSM's emotion order (happiness, sadness, neutral, ...): its DPM row and column are fixed
NEUTRAL = 2


class LightMLPExpert(nn.Module):
    """A private expert ``Linear(D → H) – GELU (exact) – Linear(H → D)``, xavier-uniform weights, zero biases
    (official ``LightMLPExpert``; SSM uses H = 512 with D = 768)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model)
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` → ``(N, D)``."""
        return self.fc2(self.act(self.fc1(x)))


class MoEFFN(nn.Module):
    """The FFN of one of the last six CLIP vision blocks, as SSM replaces it (official ``TrueMoE_FFN``):

    ``out = MLP_shared(x) + α · Σ_{k ∈ top-2} g_k(x) · E_k(x)``,  ``g = softmax((W_g x + ε) / τ)``,

    with the pretrained CLIP MLP as the always-on shared expert, ``n_experts`` private :class:`LightMLPExpert`
    s, ε ~ N(0, ``noise_std``²) only in training, τ = 1, the top-2 probabilities kept **without
    renormalisation**, W_g xavier-uniform with gain 0.1 and zero bias, α a learnable scalar (init 0.1).

    The shared expert's activation: the official code looks for an attribute ``act`` on OpenAI's MLP, which
    names it ``gelu``, so the patched blocks run **exact GELU** instead of CLIP's QuickGELU (§3.1, §9.1);
    ``shared_act="gelu"`` (default) reproduces that, ``"quick_gelu"`` keeps CLIP's own activation.

    Dispatch (``dispatch``): the official code walks the ``(N, k)`` expert indices flattened row-major and gives
    slot s of token j the expert at flat position ``s·N + j`` ("the original flattened top-k traversal order",
    ``ssm/models/moe.py``), weighted by token j's own slot-s probability; so for the first half of the tokens
    both slots use the top-2 experts of token 2j, 2j + 1, not their own. ``"official"`` (default) reproduces
    this, which the released checkpoints were trained with; ``"per_token"`` routes every token to its own
    top-k experts (the routing the paper describes). Each private expert runs once on the tokens that use it in
    either slot (the official code runs it per slot): the same sums.

    Args:
        fc1, fc2: the pretrained MLP's linear layers (``D → 4D``, ``4D → D``); they become ``shared_fc1`` /
            ``shared_fc2`` (the official ``shared_expert.0`` / ``.2`` alias the same tensors).
    """

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, n_experts: int = 4, hidden: int = 512, topk: int = 2,
                 noise_std: float = 1e-2, temperature: float = 1.0, shared_act: str = "gelu",
                 dispatch: str = "official"):
        super().__init__()
        if dispatch not in ("official", "per_token"):
            raise ValueError(f"dispatch must be 'official' or 'per_token', not {dispatch!r}")
        if shared_act not in ("gelu", "quick_gelu"):
            raise ValueError(f"shared_act must be 'gelu' (the official behaviour) or 'quick_gelu', not {shared_act!r}")
        if not 1 <= topk <= n_experts:
            raise ValueError(f"topk must be in 1..{n_experts}, not {topk}")
        d = fc1.in_features
        self.shared_fc1, self.shared_fc2 = fc1, fc2
        self.shared_act = shared_act
        self.private_experts = nn.ModuleList([LightMLPExpert(d, hidden) for _ in range(n_experts)])
        self.gate = nn.Linear(d, n_experts)
        nn.init.xavier_uniform_(self.gate.weight, gain=0.1)
        nn.init.zeros_(self.gate.bias)
        self.alpha = nn.Parameter(torch.tensor(0.1))
        self.topk, self.noise_std, self.temperature = int(topk), float(noise_std), float(temperature)
        self.dispatch = dispatch

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) if self.shared_act == "gelu" else x * torch.sigmoid(1.702 * x)

    def routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k routing of tokens ``(N, D)``: probabilities ``(N, k)`` (not renormalised) and expert indices
        ``(N, k)``; router noise only in training mode."""
        logits = self.gate(x)
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        return torch.softmax(logits / self.temperature, dim=-1).topk(self.topk, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` (transformers' batch-first layout) or ``(N, D)`` → the same shape. With the official
        dispatch the tokens are ordered as in OpenAI CLIP's sequence-first layout, position-major, since the
        slot assignment depends on the flat order."""
        seq_first = self.dispatch == "official" and x.ndim == 3
        if seq_first:
            x = x.transpose(0, 1)
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        out = self.shared_fc2(self._act(self.shared_fc1(flat)))
        weights, idx = self.routing(flat)
        if self.dispatch == "official":  # slot s of token j: the flat index s·N + j (see the class docstring)
            idx = idx.reshape(-1).reshape(self.topk, -1).t()
        side = torch.zeros_like(flat)
        for e, expert in enumerate(self.private_experts):
            w = (weights * (idx == e)).sum(-1)  # (N,) this expert's gate (0 where not routed)
            rows = (idx == e).any(-1).nonzero().squeeze(-1)
            if rows.numel():
                side.index_add_(0, rows, expert(flat[rows]) * w[rows, None].to(flat.dtype))
        out = (out + self.alpha * side).reshape(shape)
        return out.transpose(0, 1) if seq_first else out


class DynamicPriorMapping(nn.Module):
    """DPM (methods.md §3.1 item 3; official ``_compute_maps``): two learnable maps initialised to the FACS
    prior P ``(E, A)`` (methods.md §2.3, :func:`aufer.vocab.ssm_prior`) and the cross-task prototype mixing.

    * ``M_a→e = softmax_row(log(P + 1e-8) + Δ1) ⊙ rowsum(P)``, row ``neutral`` replaced by ``P[neutral]``;
    * ``M_e→a[:, j≠n] = softmax_row(log(Pᵀ + 1e-8) + Δ2)[:, j≠n] ⊙ (colsum(P) − Pᵀ[:, n])``, ``M_e→a[:, n] =
      Pᵀ[:, n]``;
    * ``T̃_e = normalise(T_e + σ(α) · M_a→e T_a)``, ``T̃_a = normalise(T_a + σ(β) · M_e→a T_e)``, with α, β
      initialised to ``log(0.1 / 0.9)`` (σ = 0.1).

    At Δ = 0 both maps equal the prior up to the 1e-8 (§9.1 item 8); each emotion row of ``M_a→e`` keeps the
    prior's row mass and each AU row of ``M_e→a`` its column mass. Official names: ``init_map``,
    ``row_targets_au2emo``, ``row_targets_emo2au``, ``delta_map1`` (Δ1, E × A), ``delta_map2`` (Δ2, A × E),
    ``alpha``, ``beta``.

    Raises:
        ValueError: a prior that is not 2-D and positive, or a neutral index outside its rows.
    """

    def __init__(self, prior: torch.Tensor, neutral: int | None = NEUTRAL):
        super().__init__()
        prior = torch.as_tensor(prior, dtype=torch.float32)
        if prior.ndim != 2 or not bool((prior > 0).all()):
            raise ValueError(f"DPM needs a positive (E, A) prior, got shape {tuple(prior.shape)}")
        if neutral is not None and not 0 <= neutral < prior.shape[0]:
            raise ValueError(f"neutral index {neutral} outside the prior's {prior.shape[0]} emotion rows")
        self.neutral = neutral
        self.register_buffer("init_map", prior.clone())
        self.register_buffer("row_targets_au2emo", prior.sum(1))
        self.register_buffer("row_targets_emo2au", prior.sum(0))
        self.delta_map1 = nn.Parameter(torch.zeros_like(prior))
        self.delta_map2 = nn.Parameter(torch.zeros_like(prior.t()))
        g = math.log(0.1 / 0.9)
        self.alpha, self.beta = nn.Parameter(torch.tensor(g)), nn.Parameter(torch.tensor(g))

    def maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M_a→e (E, A), M_e→a (A, E))``."""
        eps, p, n = 1e-8, self.init_map, self.neutral
        a2e = torch.softmax(torch.log(p + eps) + self.delta_map1, dim=1) * self.row_targets_au2emo[:, None]
        pt = p.t()
        if n is None:
            e2a = torch.softmax(torch.log(pt + eps) + self.delta_map2, dim=1) * self.row_targets_emo2au[:, None]
            return a2e, e2a
        a2e = torch.cat([a2e[:n], p[n:n + 1], a2e[n + 1:]], 0)
        keep = [j for j in range(pt.shape[1]) if j != n]
        mass = (self.row_targets_emo2au - pt[:, n]).clamp_min(0.0)
        rest = torch.softmax(torch.log(pt[:, keep] + eps) + self.delta_map2[:, keep], dim=1) * mass[:, None]
        e2a = torch.cat([rest[:, :n], pt[:, n:n + 1], rest[:, n:]], 1)
        return a2e, e2a

    def forward(self, t_e: torch.Tensor, t_a: torch.Tensor) -> dict[str, torch.Tensor]:
        """L2-normalised prototypes ``T_e (E, P)``, ``T_a (A, P)`` → ``{"t_e", "t_a"}`` mixed and re-normalised,
        and the maps ``"map_au2emo"`` ``(E, A)``, ``"map_emo2au"`` ``(A, E)``."""
        a2e, e2a = self.maps()
        te = t_e + torch.sigmoid(self.alpha) * (a2e @ t_a)
        ta = t_a + torch.sigmoid(self.beta) * (e2a @ t_e)
        return {"t_e": te / te.norm(dim=-1, keepdim=True), "t_a": ta / ta.norm(dim=-1, keepdim=True),
                "map_au2emo": a2e, "map_emo2au": e2a}


class TanhGELU(nn.Module):
    """GELU's tanh approximation (the official temporal FFN's own ``GELU`` class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class _PreNormBlock(nn.Module):
    """One pre-norm transformer layer: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` (8 heads × 64, no dropout)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.attn_norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim) if not (heads == 1 and dim_head == dim) else nn.Identity()
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), TanhGELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.attn_norm(x)).chunk(3, -1))
        att = (q @ k.transpose(-1, -2) * self.scale).softmax(-1)
        x = x + self.to_out((att @ v).transpose(1, 2).reshape(b, n, -1))
        return x + self.ff(self.ff_norm(x))


class TemporalTransformerCls(nn.Module):
    """The expression temporal net (official ``Temporal_Transformer_Cls``, from DFER-CLIP): a learnable CLS token
    ``(1, 1, D)`` prepended, a learnable position embedding ``(1, T + 1, D)`` added, ``depth`` pre-norm layers,
    output ``LN(h_cls + g · x_cls)`` with a learnable gate g (init 1). Initialisation as the official code
    (§9.1 item 4): CLS and position embedding ~ N(0, 1) (``torch.randn``), linear layers PyTorch's default.

    ``(B, T, D)`` (T ≤ ``num_frames``) → ``(B, D)``.
    """

    def __init__(self, num_frames: int = 16, dim: int = 512, depth: int = 1, heads: int = 8, dim_head: int = 64,
                 mlp_dim: int = 1024):
        super().__init__()
        self.num_frames = num_frames
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_frames + 1, dim))
        self.layers = nn.ModuleList([_PreNormBlock(dim, heads, dim_head, mlp_dim) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        if n > self.num_frames:
            raise ValueError(f"the expression temporal net takes at most {self.num_frames} frames, got {n}")
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1) + self.pos_embedding[:, : n + 1]
        res = x[:, 0]
        for layer in self.layers:
            x = layer(x)
        return self.ln(x[:, 0] + self.gate * res)


class LocalFrameAttention(nn.Module):
    """The AU temporal layer (official ``_LocalFrameAttention``): attention of each frame to the frames within
    ``radius`` (|i − j| ≤ r) with a learnable relative-position bias table ``(heads, 2r + 1)`` (init 1 at the
    centre, 0 elsewhere), queries and keys from ``LN(x)`` (``to_k`` initialised equal to ``to_q``, xavier-uniform
    gain 0.5, no bias), values the *raw* frame features, and the bounded update
    ``x + max_update · tanh(γ) ⊙ (context − x)`` with a per-channel γ (init 0: the identity at initialisation).

    ``(B, T, D)`` → ``(B, T, D)``; T ≤ ``num_frames``.

    Raises:
        ValueError: ``heads · dim_head ≠ dim``, a radius outside ``1 .. num_frames − 1``, ``max_update`` outside
            (0, 1].
    """

    def __init__(self, num_frames: int = 16, dim: int = 512, heads: int = 8, dim_head: int = 64, radius: int = 1,
                 max_update: float = 0.25):
        super().__init__()
        if heads * dim_head != dim:
            raise ValueError(f"local AU attention needs heads × dim_head == dim, got {heads} × {dim_head} ≠ {dim}")
        if not 0 < radius < num_frames:
            raise ValueError(f"radius must be in 1..{num_frames - 1}, not {radius}")
        if not 0.0 < max_update <= 1.0:
            raise ValueError(f"max_update must be in (0, 1], not {max_update}")
        self.heads, self.scale, self.max_update, self.radius = heads, dim_head ** -0.5, float(max_update), radius
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.to_q.weight, gain=0.5)
        with torch.no_grad():
            self.to_k.weight.copy_(self.to_q.weight)
        bias = torch.zeros(heads, 2 * radius + 1)
        bias[:, radius] = 1.0
        self.relative_position_bias = nn.Parameter(bias)
        self.channel_gate = nn.Parameter(torch.zeros(dim))
        off = torch.arange(num_frames)[None, :] - torch.arange(num_frames)[:, None]
        self.register_buffer("local_mask", off.abs() <= radius, persistent=False)
        self.register_buffer("relative_index", off.clamp(-radius, radius) + radius, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        if n > self.local_mask.shape[0]:
            raise ValueError(f"the AU temporal net takes at most {self.local_mask.shape[0]} frames, got {n}")
        h = self.norm(x)
        q = self.to_q(h).reshape(b, n, self.heads, -1).transpose(1, 2)
        k = self.to_k(h).reshape(b, n, self.heads, -1).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) * self.scale
        scores = scores + self.relative_position_bias[:, self.relative_index[:n, :n]].unsqueeze(0).to(scores.dtype)
        scores = scores.masked_fill(~self.local_mask[:n, :n], torch.finfo(scores.dtype).min)
        v = x.reshape(b, n, self.heads, -1).transpose(1, 2)
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return x + (self.max_update * torch.tanh(self.channel_gate)).to(x.dtype) * (ctx - x)


class TemporalTransformerAll(nn.Module):
    """The AU temporal net (official ``Temporal_Transformer_All``): ``depth`` :class:`LocalFrameAttention` layers
    (SSM: 1; its ``mlp_dim`` argument is unused in the official code, so there is none here).
    ``(B, T, D)`` → ``(B, T, D)``."""

    def __init__(self, num_frames: int = 16, dim: int = 512, depth: int = 1, heads: int = 8, dim_head: int = 64,
                 radius: int = 1, max_update: float = 0.25):
        super().__init__()
        self.layers = nn.ModuleList([LocalFrameAttention(num_frames, dim, heads, dim_head, radius, max_update)
                                     for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"the AU temporal net takes (B, T, D), got {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x)
        return x


class PairSmoother(nn.Module):
    """The "legacy smoother" of SSM's AU logits: a depthwise ``Conv1d(A, A, 2K + 1, padding=K, bias=False)``
    (K = 2, weights 1 / (2K + 1), trainable) applied to consecutive **pairs** of frames, each pair zero-padded
    on its own, so at initialisation both frames of a pair get ``(z_t + z_{t+1}) / 5``.

    ``(B, T, A)`` logits → ``(B, T, A)``. The official code takes T = 16 only; for an odd T (aufer: a still
    photo is a one-frame clip) the last frame is paired with a copy of itself.
    """

    def __init__(self, n_aus: int, k: int = 2):
        super().__init__()
        self.conv = nn.Conv1d(n_aus, n_aus, 2 * k + 1, padding=k, groups=n_aus, bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / (2 * k + 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, a = z.shape
        if t % 2:
            z = torch.cat([z, z[:, -1:]], 1)
        pairs = z.reshape(-1, 2, a).transpose(1, 2)
        return self.conv(pairs).transpose(1, 2).reshape(b, -1, a)[:, :t]
