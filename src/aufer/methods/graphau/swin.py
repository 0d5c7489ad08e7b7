"""Swin-Tiny / Swin-Base trunks of ME-GraphAU / OpenGraphAU in plain torch, with the tensor names of the official
``model/swin_transformer.py`` (Microsoft's layout: ``patch_embed.{proj,norm}``,
``layers.i.blocks.j.{norm1,attn.{qkv,proj,relative_position_bias_table,relative_position_index},norm2,mlp.{fc1,fc2}}``,
the shifted blocks' ``attn_mask`` buffer, ``layers.i.downsample.{norm,reduction}`` (patch merging) and the final
``norm``), so that official checkpoints load key for key.

The official model drops the classifier (``backbone.head = None``: no ``head.*`` tensors) and returns the normed
tokens of the last stage ``(N, 49, C)`` at 224 px, as here. As the official block, a stage whose resolution is no
larger than the window uses one window of that size and no shift. ``relative_position_index`` and ``attn_mask`` are
persistent buffers (the official files hold them); aufer computes them from the configuration. No absolute position
embedding (``ape=False``), patch norm on, qkv bias on, GELU, LayerNorm (eps 1e-5), drop path only in training
(Tiny 0.2, Base 0.5, linearly over the blocks as the official ``dpr``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SwinTrunk", "SWIN_CONFIGS"]

#: embed_dim, depths, heads, drop-path rate of the official factories (window 7, patch 4)
SWIN_CONFIGS = {"swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2), "swin_b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5)}


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(N, H, W, C)`` → ``(N · H/w · W/w, w², C)`` (row-major windows, as the official ``window_partition``)."""
    n, h, wd, c = x.shape
    return x.view(n, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    n = x.shape[0] // ((h // w) * (wd // w))
    return x.view(n, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(n, h, wd, -1)


def relative_position_index(w: int) -> torch.Tensor:
    """``(w², w²)`` index into the ``(2w − 1)²`` relative-position table."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()])
    rel = pts[:, :, None] - pts[:, None, :] + (w - 1)
    return rel[0] * (2 * w - 1) + rel[1]


def shift_mask(res: int, w: int, shift: int) -> torch.Tensor:
    """``(nW, w², w²)``: 0 within a region of the cyclically shifted map, −100 across regions."""
    idx = torch.arange(res)
    band = (idx >= res - w).long() + (idx >= res - shift).long()
    region = (band[:, None] * 3 + band[None, :]).float()[None, :, :, None]
    win = _windows(region, w).squeeze(-1)
    return (win[:, None, :] - win[:, :, None]).ne(0).float() * -100.0


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads, self.scale = window, heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.heads, n, n) + mask[None, :, None]).view(b, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, res: int, heads: int, window: int, shift: int, drop_path: float):
        super().__init__()
        if res <= window:
            window, shift = res, 0
        self.res, self.window, self.shift, self.drop_path = res, window, shift, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, 4 * dim)
        if shift:
            self.register_buffer("attn_mask", shift_mask(res, window, shift))
        else:
            self.attn_mask = None

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        return x * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, c = x.shape
        r, w, s = self.res, self.window, self.shift
        y = self.norm1(x).view(n, r, r, c)
        if s:
            y = torch.roll(y, (-s, -s), (1, 2))
        y = _unwindows(self.attn(_windows(y, w), self.attn_mask), w, r, r)
        if s:
            y = torch.roll(y, (s, s), (1, 2))
        x = x + self._drop(y.reshape(n, l, c))
        return x + self._drop(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, res: int):
        super().__init__()
        self.res = res
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, c = x.shape
        x = x.view(n, self.res, self.res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(n, -1, 4 * c)))


class _Stage(nn.Module):
    def __init__(self, dim: int, res: int, depth: int, heads: int, window: int, dpr: list[float], merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, res, heads, window, 0 if j % 2 == 0 else window // 2, dpr[j])
                                    for j in range(depth))
        self.downsample = PatchMerging(dim, res) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTrunk(nn.Module):
    """Swin-T / Swin-B: images ``(N, 3, S, S)`` (S = ``img_size``, 224 for the official models) → tokens
    ``(N, (S/32)², C)``, C = 768 (T) / 1024 (B). ``window`` may be lowered for small test images."""

    def __init__(self, name: str = "swin_b", img_size: int = 224, window: int = 7):
        super().__init__()
        if name not in SWIN_CONFIGS:
            raise ValueError(f"unknown Swin {name!r}: expected one of {', '.join(SWIN_CONFIGS)}")
        dim, depths, heads, rate = SWIN_CONFIGS[name]
        self.name, self.img_size = name, int(img_size)
        self.num_features = dim * 8
        self.patch_embed = _PatchEmbed(dim, 4)
        dpr = torch.linspace(0, rate, sum(depths)).tolist()
        res = self.img_size // 4
        self.layers = nn.ModuleList()
        for i, (d, h) in enumerate(zip(depths, heads)):
            rates = dpr[sum(depths[:i]):sum(depths[:i + 1])]
            self.layers.append(_Stage(dim * 2 ** i, res // 2 ** i, d, h, window, rates, i < len(depths) - 1))
        self.norm = nn.LayerNorm(self.num_features)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"Swin trunk built for {self.img_size} px inputs, got {tuple(x.shape[-2:])}")
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)
