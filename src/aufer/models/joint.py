"""The joint AU + expression model: one shared frame encoder, an AU head per frame, an expression head per clip.

Everything is a clip ``(B, T, 3, H, W)``; a still is ``T = 1``. The model returns a dict keyed by task:
``{"au": (B, T, A) logits, "expr": (B, E) logits, "features": (B, T, D)}``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.faces.landmarks import mesh_mirror
from aufer.models.backbones import HFBackbone, TinyCNN
from aufer.models.geometry import LandmarkEncoder
from aufer.models.registry import register_model

__all__ = ["JointNet", "aufer_tiny", "aufer_tiny_image", "aufer_hf"]


class JointNet(nn.Module):
    """Shared encoder + AU head (multi-label, per frame) + expression head (single-label, per clip).

    Args:
        aus: AU numbers of the AU head's outputs.
        emotions: class names of the expression head's outputs.
        backbone: frame encoder ``(N, 3, S, S) → (N, D_img)``.
        landmark_encoder: optional mesh encoder ``(N, 478, 3) → (N, D_geo)``; its features are concatenated
            with the image features.
        dim: size D of the shared per-frame representation.
        input_size: side S of the encoder's input in pixels (crops of another size are resized).
        norm: input normalisation name (``imagenet`` | ``clip``, see :func:`aufer.vocab.normalisation`).
        au_to_expr: add a learned linear map from the clip's mean AU probabilities to the expression logits
            (initialised at zero), so that expression recognition can read the AU evidence directly.
        geometry_au: add a linear AU head on the landmark-geometry features to the AU logits (AUs are facial
            motions; this gives them a direct geometric path besides the fused image + geometry features).
        config: the factory name and arguments that rebuild this model (saved with checkpoints).
    """

    def __init__(self, aus: Sequence[int], emotions: Sequence[str], backbone: nn.Module,
                 landmark_encoder: nn.Module | None = None, dim: int = 256, input_size: int = 112,
                 norm: str = "imagenet", dropout: float = 0.2, au_to_expr: bool = False, geometry_au: bool = False,
                 config: dict | None = None):
        super().__init__()
        self.aus = tuple(int(a) for a in aus)
        self.emotions = tuple(emotions)
        self.input_size = int(input_size)
        self.backbone = backbone
        self.landmark_encoder = landmark_encoder
        d_in = backbone.out_dim + (landmark_encoder.out_dim if landmark_encoder is not None else 0)
        self.fuse = nn.Sequential(nn.Linear(d_in, dim), nn.GELU(), nn.Dropout(dropout))
        self.au_head = nn.Linear(dim, len(self.aus))
        self.expr_head = nn.Linear(dim, len(self.emotions))
        self.geometry_au_head = None
        if geometry_au:
            if landmark_encoder is None:
                raise ValueError("geometry_au needs a landmark encoder")
            self.geometry_au_head = nn.Linear(landmark_encoder.out_dim, len(self.aus))
        self.au_to_expr = nn.Linear(len(self.aus), len(self.emotions), bias=False) if au_to_expr else None
        if self.au_to_expr is not None:
            nn.init.zeros_(self.au_to_expr.weight)
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.config = dict(config or {})

    @property
    def uses_landmarks(self) -> bool:
        return self.landmark_encoder is not None

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 crops ``(B, T, S, S, 3)`` (RGB, as the face pipeline makes them) → normalised float
        ``(B, T, 3, input_size, input_size)``."""
        b, t = crops.shape[:2]
        x = crops.reshape(b * t, *crops.shape[2:]).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x - self.mean) / self.std
        return x.reshape(b, t, 3, self.input_size, self.input_size)

    def _frame_features(self, x: torch.Tensor, landmarks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t = x.shape[:2]
        feats = [self.backbone(x.reshape(b * t, *x.shape[2:]))]
        geo = None
        if self.landmark_encoder is not None:
            if landmarks is None:
                raise ValueError("this model uses landmark geometry: pass landmarks (B, T, 478, 3)")
            geo = self.landmark_encoder(landmarks.reshape(b * t, *landmarks.shape[2:]))
            feats.append(geo)
        return self.fuse(torch.cat(feats, 1)).reshape(b, t, -1), geo

    def forward_features(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Shared per-frame representation ``(B, T, D)`` of normalised clips ``(B, T, 3, S, S)`` and, when the
        model uses them, landmarks ``(B, T, 478, 3)`` in crop pixels.

        Raises:
            ValueError: if the model needs landmarks and none are given.
        """
        return self._frame_features(x, landmarks)[0]

    def forward(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"au": (B, T, A) logits, "expr": (B, E) logits, "features": (B, T, D)}``; the expression head
        reads the temporal mean of the frame features (and, with ``au_to_expr``, of the AU probabilities)."""
        f, geo = self._frame_features(x, landmarks)
        au = self.au_head(f)
        if self.geometry_au_head is not None:
            au = au + self.geometry_au_head(geo).reshape(*au.shape)
        expr = self.expr_head(f.mean(1))
        if self.au_to_expr is not None:
            expr = expr + self.au_to_expr(torch.sigmoid(au).mean(1))
        return {"au": au, "expr": expr, "features": f}

    @torch.no_grad()
    def probabilities(self, crops: torch.Tensor, landmarks: torch.Tensor | None = None,
                      flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference on uint8 crops ``(B, T, S, S, 3)`` and landmarks ``(B, T, 478, 3)`` in crop pixels:
        AU probabilities ``(B, T, A)`` (sigmoid) and expression probabilities ``(B, E)`` (softmax). With
        ``flip``, the horizontally mirrored face (image flipped, landmarks mirrored) is analysed too and the two
        results are averaged (AUs and expressions are left/right symmetric labels)."""
        lm = landmarks if self.uses_landmarks else None
        out = self(self.preprocess(crops), lm)
        p_au, p_e = torch.sigmoid(out["au"]), torch.softmax(out["expr"], -1)
        if flip:
            size = crops.shape[-2]
            lm_f = None
            if lm is not None:
                lm_f = lm[..., torch.from_numpy(mesh_mirror()), :].clone()
                lm_f[..., 0] = size - 1 - lm_f[..., 0]
            out_f = self(self.preprocess(crops.flip(-2)), lm_f)
            p_au = (p_au + torch.sigmoid(out_f["au"])) / 2
            p_e = (p_e + torch.softmax(out_f["expr"], -1)) / 2
        return p_au, p_e


def _defaults(aus, emotions):
    return tuple(aus if aus is not None else vocab.dataset_aus("BP4D")), tuple(emotions or vocab.EMOTIONS_7)


@register_model
def aufer_tiny(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 112,
               width: int = 32, dim: int = 256, geometry_dim: int = 128, dropout: float = 0.2,
               au_to_expr: bool = True, geometry_au: bool = False) -> JointNet:
    """aufer's CPU demo model: a from-scratch tiny CNN on the aligned crop + an MLP on the landmark geometry.
    Trains in minutes on 2 CPU cores. Default AUs: BP4D's 12; default emotions: the 7 classes."""
    aus, emotions = _defaults(aus, emotions)
    cfg = {"name": "aufer_tiny", "aus": list(aus), "emotions": list(emotions), "input_size": input_size,
           "width": width, "dim": dim, "geometry_dim": geometry_dim, "dropout": dropout, "au_to_expr": au_to_expr,
           "geometry_au": geometry_au}
    return JointNet(aus, emotions, TinyCNN(dim, width, input_size, dropout), LandmarkEncoder(geometry_dim, dropout=dropout),
                    dim=dim, input_size=input_size, dropout=dropout, au_to_expr=au_to_expr, geometry_au=geometry_au,
                    config=cfg)


@register_model
def aufer_tiny_image(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 112,
                     width: int = 32, dim: int = 256, dropout: float = 0.2) -> JointNet:
    """The tiny CNN alone (no landmark geometry), for ablations."""
    aus, emotions = _defaults(aus, emotions)
    cfg = {"name": "aufer_tiny_image", "aus": list(aus), "emotions": list(emotions), "input_size": input_size,
           "width": width, "dim": dim, "dropout": dropout}
    return JointNet(aus, emotions, TinyCNN(dim, width, input_size, dropout), None, dim=dim, input_size=input_size,
                    dropout=dropout, config=cfg)


@register_model
def aufer_hf(model: str | None = "microsoft/resnet-50", pretrained: bool = True, hf_config: dict | None = None,
             aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 224,
             dim: int = 256, use_landmarks: bool = False, norm: str = "imagenet", dropout: float = 0.1) -> JointNet:
    """Any transformers vision backbone (a local directory or hub id; ``hf_config`` builds it from a config
    dict instead, e.g. for tests) with the joint heads. Saved checkpoints keep the backbone's config, so they
    reload offline."""
    aus, emotions = _defaults(aus, emotions)
    backbone = HFBackbone(model, pretrained=pretrained, out_dim=dim, config=hf_config)
    cfg = {"name": "aufer_hf", "model": model, "pretrained": False,
           "hf_config": backbone.net.config.to_dict() | {"model_type": backbone.net.config.model_type},
           "aus": list(aus), "emotions": list(emotions), "input_size": input_size, "dim": dim,
           "use_landmarks": use_landmarks, "norm": norm, "dropout": dropout}
    return JointNet(aus, emotions, backbone, LandmarkEncoder(128, dropout=dropout) if use_landmarks else None,
                    dim=dim, input_size=input_size, norm=norm, dropout=dropout, config=cfg)
