"""aufer's default model design: each part does what it was measured to do best, behind one model contract.

* **The seven expressions** come from face-api's FaceExpressionNet (:mod:`aufer.models.faceapi_expression`), a
  network trained on real faces (its authors: public datasets and web images), which aufer does not train.
* **Happiness against neutral** — the one split aufer has real training data for (the London photos) and where
  face-api under-calls closed-mouth smiles — is shared with aufer's own expression probe
  (:class:`aufer.models.joint.JointNet` with ``expr_probe``), a logistic regression on frozen ImageNet features.
* **The AUs** come from the JointNet's AU head.

Fusion (per clip; B clips, T frames, E = 7 emotions in :data:`aufer.vocab.EMOTIONS_7` order, A AUs)::

    p      = face-api's probabilities                         (B, E)  (the mean over the T frames)
    m      = p[happiness] + p[neutral]                        (B,)    the mass the two classes share
    s_fa   = log p[happiness] − log p[neutral]                (B,)    face-api's log-odds of happiness vs neutral
    s_pr   = z[happiness] − z[neutral]                        (B,)    the probe's, from its logits z
    r      = σ(w_faceapi · s_fa + w_probe · s_pr + bias)      (B,)
    p'     = p with p'[happiness] = m · r, p'[neutral] = m · (1 − r); the other five classes unchanged

so the fusion only moves probability between happiness and neutral: the other classes, and how much the face
looks like neither, stay face-api's. ``w_faceapi``, ``w_probe`` and ``bias`` are chosen on the real photos of
validation people, never test people (:func:`choose_fusion_weights`, with the one-standard-error rule;
``benchmarks/real_photos_cv.py`` repeats the choice in every fold, ``tools/train_default_model.py``); with
``w_faceapi = 1, w_probe = 0, bias = 0`` the output is face-api's.

Outputs of :meth:`FusedModel.forward`: ``"au"`` ``(B, T, A)`` logits (the JointNet's), ``"expr"`` ``(B, E)`` =
``log p'`` (so ``softmax`` gives ``p'`` back), ``"expr_faceapi"`` ``(B, E)`` face-api's log-probabilities,
``"expr_probe"`` ``(B, E)`` the probe's logits, ``"features"`` ``(B, T, D)`` the JointNet's.

Input: aufer's aligned crop at the JointNet's size and the 478-point mesh in crop pixels (both networks frame from
the same crop: the JointNet reads all of it, face-api the padded box of 68 mesh points).
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.models._factory import create_model
from aufer.models._registry import register_model

__all__ = ["FusedModel", "fuse_happy_neutral", "assemble", "choose_fusion_weights", "FUSION_GRID"]

HAPPY, NEUTRAL = vocab.EMOTIONS_7.index("happiness"), vocab.EMOTIONS_7.index("neutral")

#: the JointNet of aufer's default model (its expression probe reads the frozen stride-8/16 grid)
DEFAULT_JOINT: dict[str, Any] = {"name": "aufer_lite.lite0", "pretrained": False, "features": "grid",
                                 "freeze_stages": 3, "expr_probe": True, "expr_aux": True, "input_size": 160}
DEFAULT_FACEAPI: dict[str, Any] = {"name": "faceapi_expression.v1_7_15"}

default_cfgs = {
    "aufer_fusion.faceapi": dict(input_size=160, crop_size=160, norm="efficientnet_lite", clip_len=1,
                                       emotions=list(vocab.EMOTIONS_7)),
}


def fuse_happy_neutral(p_faceapi: torch.Tensor, probe_logits: torch.Tensor, w_faceapi: float, w_probe: float,
                       bias: float, eps: float = 1e-12) -> torch.Tensor:
    """The fusion of the module docstring: ``(B, E)`` face-api probabilities and ``(B, E)`` probe logits (both in
    :data:`aufer.vocab.EMOTIONS_7` order) → ``(B, E)`` probabilities that differ from face-api's only in how
    happiness and neutral share their mass."""
    p = p_faceapi.clamp(min=eps)
    s_fa = p[:, HAPPY].log() - p[:, NEUTRAL].log()
    s_pr = probe_logits[:, HAPPY] - probe_logits[:, NEUTRAL]
    r = torch.sigmoid(w_faceapi * s_fa + w_probe * s_pr + bias)
    m = p_faceapi[:, HAPPY] + p_faceapi[:, NEUTRAL]
    out = p_faceapi.clone()
    out[:, HAPPY], out[:, NEUTRAL] = m * r, m * (1 - r)
    return out


class FusedModel(nn.Module):
    """A JointNet (AUs and the expression probe) and face-api's expression network, fused as the module docstring
    says.

    Args:
        joint: the JointNet (emotions :data:`aufer.vocab.EMOTIONS_7`); its ``"expr"`` logits are what is fused — the
            expression probe's for the default model (``expr_probe=True``), a trained head's otherwise.
        faceapi: a :class:`aufer.models.faceapi_expression.FaceExpressionNet` with the same emotions.
        w_faceapi, w_probe, bias: the fusion's weights.

    Raises:
        ValueError: a part predicts other emotions.
    """

    def __init__(self, joint: nn.Module, faceapi: nn.Module, w_faceapi: float = 1.0, w_probe: float = 1.0,
                 bias: float = 0.0):
        super().__init__()
        if tuple(joint.emotions) != vocab.EMOTIONS_7 or tuple(faceapi.emotions) != vocab.EMOTIONS_7:
            raise ValueError(f"both parts must predict {vocab.EMOTIONS_7} in this order, not {joint.emotions} and "
                             f"{faceapi.emotions}")
        self.joint, self.faceapi = joint, faceapi
        self.aus, self.emotions = tuple(joint.aus), vocab.EMOTIONS_7
        self.input_size = int(joint.input_size)
        self.w_faceapi, self.w_probe, self.bias = float(w_faceapi), float(w_probe), float(bias)

    @property
    def uses_landmarks(self) -> bool:
        """Always: face-api frames the face by 68 of the mesh points (a crop without landmarks falls back to a
        fixed central box, :data:`aufer.models.faceapi_expression.FALLBACK_BOX`)."""
        return True

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``(B, T, S, S, 3)`` → float32 ``(B, T, 3, S, S)`` in [0, 255] (not normalised: face-api
        frames and normalises its box, :meth:`forward` normalises the JointNet's input).

        Raises:
            ValueError: if ``crops`` is not ``(B, T, S, S, 3)``.
        """
        return self.faceapi.preprocess(crops)

    def _joint_input(self, clips: torch.Tensor) -> torch.Tensor:
        """The JointNet's ``preprocess`` on float pixels: ``(B, T, 3, S, S)`` in [0, 255] → normalised
        ``(B, T, 3, H, H)``, resized (bilinear, antialiased) when S ≠ H, as :func:`aufer.models.contract.normalise_crops`."""
        b, t = clips.shape[:2]
        x = clips.reshape(b * t, *clips.shape[2:]) / 255.0
        h = self.joint.input_size
        if x.shape[-2:] != (h, h):
            x = F.interpolate(x, size=(h, h), mode="bilinear", align_corners=False, antialias=True)
        return ((x - self.joint.mean) / self.joint.std).reshape(b, t, 3, h, h)

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``clips`` ``(B, T, 3, S, S)`` from :meth:`preprocess`, ``landmarks`` ``(B, T, 478, 3)`` in crop pixels
        or None → ``{"au", "expr", "expr_faceapi", "expr_probe", "features"}`` (module docstring)."""
        j = self.joint(self._joint_input(clips), landmarks if self.joint.uses_landmarks else None)
        fa = self.faceapi(clips, landmarks)["expr"]
        p = fuse_happy_neutral(torch.softmax(fa, -1), j["expr"], self.w_faceapi, self.w_probe, self.bias)
        return {"au": j["au"], "expr": p.clamp(min=1e-12).log(), "expr_faceapi": fa, "expr_probe": j["expr"],
                "features": j["features"]}

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """The JointNet's per-frame features ``(B, T, D)``."""
        return self.joint.forward_features(self._joint_input(clips), landmarks if self.joint.uses_landmarks else None)


@register_model
def aufer_fusion(joint: dict | None = None, faceapi: dict | None = None, w_faceapi: float = 1.0,
                 w_probe: float = 1.0, bias: float = 0.0, crop_size: int = 160, aus: Sequence[int] | None = None,
                 emotions: Sequence[str] | None = None) -> FusedModel:
    """aufer's default-model design (module docstring), built from the configs of its two parts.

    Args:
        joint: ``create_model`` arguments of the JointNet (``{"name": "aufer_lite.lite0", ...}``; default
            :data:`DEFAULT_JOINT`), random weights: a checkpoint of the fused model holds both parts' weights.
        faceapi: ``create_model`` arguments of face-api's network (default :data:`DEFAULT_FACEAPI`).
        w_faceapi, w_probe, bias: the fusion's weights.
        crop_size: side of the aligned crop the face pipeline makes for it (the JointNet's input size).
        aus, emotions: the data's vocabularies when the engine passes them; ``aus`` goes to the JointNet,
            ``emotions`` must be :data:`aufer.vocab.EMOTIONS_7`.

    Raises:
        ValueError: other emotions.
    """
    if emotions is not None and tuple(emotions) != vocab.EMOTIONS_7:
        raise ValueError(f"aufer_fusion predicts {vocab.EMOTIONS_7}, not {tuple(emotions)}")
    jcfg = dict(joint or DEFAULT_JOINT)
    if aus is not None:
        jcfg["aus"] = list(aus)
    jcfg["emotions"] = list(vocab.EMOTIONS_7)
    fcfg = dict(faceapi or DEFAULT_FACEAPI)
    fcfg["emotions"] = list(vocab.EMOTIONS_7)
    j = create_model(**jcfg)
    f = create_model(**fcfg)
    m = FusedModel(j, f, w_faceapi, w_probe, bias)
    m.config_overrides = {"joint": j.config, "faceapi": f.config, "aus": None, "emotions": None,
                          "crop_size": int(crop_size)}
    return m


def assemble(joint: nn.Module, faceapi: nn.Module, w_faceapi: float = 1.0, w_probe: float = 1.0,
             bias: float = 0.0) -> FusedModel:
    """A registered ``aufer_fusion`` model holding the weights of a trained JointNet and of face-api's network
    (both built by ``create_model``, e.g. loaded with :func:`aufer.models.load_model`), so that it can be saved
    with :func:`aufer.models.save_model` and loaded back by name. The parts are copied, not shared.

    Raises:
        ValueError: as :class:`FusedModel`.
    """
    for part in (joint, faceapi):
        if tuple(part.emotions) != vocab.EMOTIONS_7:
            raise ValueError(f"both parts must predict {vocab.EMOTIONS_7} in this order, not {tuple(part.emotions)}")
    m = create_model("aufer_fusion", joint=joint.config, faceapi=faceapi.config, w_faceapi=w_faceapi,
                     w_probe=w_probe, bias=bias, crop_size=int(joint.default_cfg.get("crop_size", joint.input_size)))
    m.joint.load_state_dict(joint.state_dict())
    m.faceapi.load_state_dict(faceapi.state_dict())
    return m.eval()


#: the candidate (w_faceapi, w_probe, bias) of :func:`choose_fusion_weights`: face-api alone, the probe alone
#: (within the happiness + neutral mass) and their weighted sums
FUSION_GRID: tuple[tuple[float, float, float], ...] = tuple(
    (wf, wp, b) for wf, wp, b in itertools.product((0.0, 0.25, 0.5, 1.0), (0.0, 0.5, 1.0, 2.0), (-1.0, 0.0, 1.0))
    if wf > 0 or wp > 0)


def choose_fusion_weights(p_faceapi: np.ndarray, p_probe: np.ndarray, smiling: np.ndarray,
                          grid: Sequence[tuple[float, float, float]] = FUSION_GRID,
                          one_se: bool = True) -> tuple[tuple[float, float, float], list]:
    """The fusion weights for telling smiling from neutral photos, chosen on people held out from the probe's fit.

    Each candidate of ``grid`` is scored by the mean log-loss of ``r`` (the fused share of happiness in the
    happiness + neutral mass) against ``smiling``. With ``one_se`` (the default) the choice follows the
    one-standard-error rule (Breiman et al., *Classification and Regression Trees*, 1984; Hastie, Tibshirani &
    Friedman, *The Elements of Statistical Learning*, §7.10): among the candidates whose mean loss is within one
    standard error of the best one's (the SE of the best candidate's per-photo losses), the one that leans most on
    face-api (largest ``w_faceapi``, then lowest loss). The reason: the validation photos come from the photo
    session the probe was fitted on (the same studio, light and camera), so their loss flatters the probe; face-api
    was trained on varied real faces. Candidates the photos cannot tell apart are therefore resolved towards
    face-api. Without ``one_se``: the lowest mean loss; ties go to the earlier candidate.

    Args:
        p_faceapi: ``(N, 7)`` face-api's probabilities; p_probe: ``(N, 7)`` the probe's probabilities (its logits
            up to a constant per row); both in :data:`aufer.vocab.EMOTIONS_7` order.
        smiling: ``(N,)`` bool, True for a smiling photo, False for a neutral one.
        grid: the candidates ``(w_faceapi, w_probe, bias)``.
        one_se: apply the one-standard-error rule.

    Returns:
        ``((w_faceapi, w_probe, bias), [(w_faceapi, w_probe, bias, log-loss, accuracy, standard error), ...])``
        in ``grid`` order.

    Raises:
        ValueError: no photos, or only one kind.
    """
    smiling = np.asarray(smiling, bool)
    if smiling.size == 0 or smiling.all() or not smiling.any():
        raise ValueError("choosing the fusion weights needs smiling and neutral photos")
    pf, pp = np.clip(np.asarray(p_faceapi, float), 1e-12, 1), np.clip(np.asarray(p_probe, float), 1e-12, 1)
    s_fa = np.log(pf[:, HAPPY]) - np.log(pf[:, NEUTRAL])
    s_pr = np.log(pp[:, HAPPY]) - np.log(pp[:, NEUTRAL])
    table = []
    for wf, wp, b in grid:
        z = wf * s_fa + wp * s_pr + b
        r = np.clip(1 / (1 + np.exp(-z)), 1e-12, 1 - 1e-12)
        losses = -np.where(smiling, np.log(r), np.log(1 - r))
        se = float(losses.std(ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else 0.0
        table.append((wf, wp, b, float(losses.mean()), float(np.mean((z > 0) == smiling)), se))
    best = min(range(len(table)), key=lambda i: (table[i][3], i))
    if one_se:
        limit = table[best][3] + table[best][5]
        near = [i for i in range(len(table)) if table[i][3] <= limit]
        best = min(near, key=lambda i: (-table[i][0], table[i][3], i))
    return tuple(table[best][:3]), table
