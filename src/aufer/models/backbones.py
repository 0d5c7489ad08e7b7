"""Frame encoders: ``(N, 3, H, W)`` normalised images → ``(N, D)`` features.

``TinyCNN`` is aufer's small from-scratch encoder for CPU demos and tests. ``HFBackbone`` wraps any vision
model of the transformers library (ResNet, ConvNeXt, Swin, ViT, CLIP vision tower ...): weights load from a
local directory or, on a user's machine with network access, from the Hugging Face hub; without weights it is
built from its config with random initialisation.
"""

from __future__ import annotations

import json

import torch
import torch.nn as nn

from aufer.models.provenance import hub_source, mark_weights

__all__ = ["TinyCNN", "HFBackbone"]


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyCNN(nn.Module):
    """Four stride-2 conv blocks and a spatially resolved projection (keeps *where* on the face a feature is,
    which AU detection needs). About 35 M multiply-adds per 112 × 112 frame.

    Args:
        out_dim: feature size D.
        width: channels of the first block (doubling-ish afterwards).
        input_size: side of the square input in pixels (a multiple of 16).
        dropout: dropout before the projection.
    """

    def __init__(self, out_dim: int = 256, width: int = 32, input_size: int = 112, dropout: float = 0.2):
        super().__init__()
        w = width
        self.features = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 3 * w, 2), _conv(3 * w, 4 * w, 2))
        side = input_size // 16
        self.proj = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * side * side, out_dim),
                                  nn.ReLU(inplace=True))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, D)``."""
        return self.proj(self.features(x))


class HFBackbone(nn.Module):
    """A transformers vision model as frame encoder (pooled output, projected to ``out_dim``).

    Args:
        model: a local directory or hub id (``microsoft/resnet-50``, ``openai/clip-vit-base-patch16`` ...);
            for a CLIP-style checkpoint the vision tower is used.
        pretrained: load the weights (``from_pretrained``); otherwise build from the model's config only.
        out_dim: projection size; ``None`` keeps the backbone's own size.
        config: instead of ``model``, build a randomly initialised model from a config dict such as
            ``{"model_type": "resnet", "depths": [1, 1, 1, 1]}`` (no file or network needed: tests).

    Raises:
        OSError: if ``model`` is neither a local directory nor reachable on the hub.
    """

    def __init__(self, model: str | None = None, pretrained: bool = True, out_dim: int | None = 256,
                 config: dict | None = None):
        super().__init__()
        import transformers  # noqa: PLC0415

        if config is not None:
            net = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**config))
        elif pretrained:
            net = transformers.AutoModel.from_pretrained(model)
        else:
            net = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(model))
        self.net = mark_weights(getattr(net, "vision_model", net), hub_source(model, pretrained and config is None))
        cfg = self.net.config
        hidden = getattr(cfg, "hidden_sizes", None)
        dim = hidden[-1] if hidden else cfg.hidden_size
        self.proj = nn.Identity() if out_dim is None else nn.Linear(dim, out_dim)
        self.out_dim = dim if out_dim is None else out_dim

    def hf_config(self) -> dict:
        """The backbone's transformers config as a JSON-ready dict (``model_type`` included): passed back as
        ``config`` it rebuilds the same architecture without files or network."""
        cfg = json.loads(self.net.config.to_json_string(use_diff=False))  # JSON-safe (dtypes as strings)
        return cfg | {"model_type": self.net.config.model_type}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, D)``."""
        out = self.net(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(1)
        return self.proj(pooled.flatten(1))
