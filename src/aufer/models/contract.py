"""The contract every aufer model follows, and the inference helpers written once against it.

The training engine, evaluation, :mod:`aufer.predict` and the checkpoint code rely on nothing else.

**Attributes**

- ``aus``: tuple of AU numbers, the order of the AU outputs (``(1, 2, 4, ...)``).
- ``emotions``: tuple of class names, the order of the expression outputs (may be empty for an AU-only model).
- ``uses_landmarks``: whether ``forward`` reads landmarks.
- ``input_size``: side H = W of the model's input in pixels.
- ``default_cfg``: how to feed the model (set by :func:`~aufer.models.create_model`): ``input_size``,
  ``crop_size`` (side of the aligned face crop the face store / pipeline should make, in pixels), ``norm``,
  ``mean``, ``std``, ``clip_len`` (frames per clip), ``aus``, ``emotions``, and method-specific keys.
- ``config``: ``{"name": "arch.tag", **arguments}``; ``create_model(**config)`` rebuilds the architecture
  (set by ``create_model``; saved with checkpoints).

**Methods** (shapes: B clips, T frames, S crop side, H = W = ``input_size``, A AUs, E emotions, D features)

- ``preprocess(crops)``: uint8 RGB crops ``(B, T, S, S, 3)`` → normalised float ``(B, T, 3, H, W)``.
- ``forward(clips, landmarks=None)``: clips ``(B, T, 3, H, W)`` from ``preprocess``, landmarks
  ``(B, T, 478, 3)`` in crop pixels (x, y; z in the same scale) or ``None`` → dict with ``"au"``
  ``(B, T, A)`` logits, ``"expr"`` ``(B, E)`` logits, and method-specific auxiliary outputs (e.g.
  ``"features"`` ``(B, T, D)``). A model with ``uses_landmarks`` raises ``ValueError`` without landmarks.
- ``forward_features(clips, landmarks=None)``: the representation the heads read, e.g. ``(B, T, D)``.
- ``param_groups()`` (optional): ``{group name: [parameters]}`` covering every trainable parameter exactly
  once (e.g. ``"backbone"``, ``"heads"``); the engine gives each group its learning rate and weight decay
  from the recipe. Without it, :func:`param_groups` returns one group ``"all"``.

Probabilities are sigmoid (AUs, independent labels) and softmax (expressions, one label per clip), computed
by :func:`probabilities`, not by the models. Horizontal-flip averaging (:func:`flip_average`) is test-time
augmentation and is **off by default**: the benchmark protocols do not use it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer.faces.landmarks import mesh_mirror
from aufer.schema import au_mirror_order, au_stems

__all__ = ["JointModel", "unwrap", "param_groups", "probabilities", "flip_average", "mirror_landmarks", "crop_size",
           "frame_window", "normalise_crops"]


@runtime_checkable
class JointModel(Protocol):
    """Structural type of an aufer model (see the module docstring for the contract)."""

    aus: tuple[int, ...]
    emotions: tuple[str, ...]
    input_size: int
    default_cfg: dict[str, Any]
    config: dict[str, Any]

    @property
    def uses_landmarks(self) -> bool: ...

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, S, S, 3)`` → float ``(B, T, 3, H, W)``."""

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, T, 3, H, W)`` [+ ``(B, T, 478, 3)``] → ``{"au": (B, T, A), "expr": (B, E), ...}`` logits."""

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """The representation the heads read."""

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups covering every trainable parameter exactly once."""


def normalise_crops(crops: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The usual ``preprocess``: uint8 RGB crops ``(B, T, S, S, 3)`` → float ``(B, T, 3, size, size)``, scaled to
    [0, 1], resized bilinearly with antialiasing when S ≠ ``size``, then ``(x − mean) / std`` (``mean``, ``std``
    broadcastable to ``(N, 3, 1, 1)``)."""
    b, t = crops.shape[:2]
    x = crops.reshape(b * t, *crops.shape[2:]).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return ((x - mean) / std).reshape(b, t, 3, size, size)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (torchvision's ``model_without_ddp``), else ``model``:
    what a step or a helper calls ``preprocess`` and reads the contract's attributes on."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's named parameter groups (``model.param_groups()``, or ``{"all": trainable parameters}`` for a
    model without the method), checked; empty groups are dropped. Frozen parameters may appear in a group.

    Raises:
        ValueError: naming the parameter, if a trainable parameter is in no group, a parameter is in two groups
            (or twice in one), or a group holds a parameter that is not the model's.
    """
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    if not hasattr(model, "param_groups"):
        groups = {"all": [p for p in model.parameters() if p.requires_grad]}
    else:
        groups = {str(k): list(v) for k, v in model.param_groups().items()}
    seen: dict[int, str] = {}
    for g, params in groups.items():
        for p in params:
            if id(p) not in names:
                raise ValueError(f"parameter group {g!r} holds a parameter {tuple(p.shape)} that is not the model's")
            if id(p) in seen:
                raise ValueError(f"parameter {names[id(p)]!r} is in group {seen[id(p)]!r} and again in {g!r}")
            seen[id(p)] = g
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            raise ValueError(f"trainable parameter {names[id(p)]!r} is in no parameter group "
                             f"(groups: {', '.join(groups)})")
    return {g: v for g, v in groups.items() if v}


def crop_size(model: nn.Module) -> int:
    """Side in pixels of the aligned face crop to feed ``model``: ``default_cfg["crop_size"]``, else its
    ``input_size``.

    Raises:
        AttributeError: if the model declares neither.
    """
    size = (getattr(model, "default_cfg", None) or {}).get("crop_size")
    return int(size if size is not None else model.input_size)


def frame_window(model: nn.Module) -> int:
    """Frames T the model needs per AU forward pass at inference: ``default_cfg["window"]`` for a clip model
    (MDHR: 16, its temporal modules need a clip), else 1 (a frame model; ``clip_len`` of the joint models is the
    expression clip length in training, not an inference requirement)."""
    return int((getattr(model, "default_cfg", None) or {}).get("window") or 1)


def mirror_landmarks(landmarks: torch.Tensor, width: int) -> torch.Tensor:
    """Landmarks ``(..., 478, 2|3)`` in pixels of a crop ``width`` pixels wide → those of the horizontally
    flipped crop: x ↦ width − 1 − x, and points relabelled left ↔ right
    (:func:`aufer.faces.landmarks.mesh_mirror`), so that point i is still the same facial point."""
    out = landmarks[..., torch.from_numpy(mesh_mirror()).to(landmarks.device), :].clone()
    out[..., 0] = width - 1 - out[..., 0]
    return out


@torch.no_grad()
def _single_pass(model: nn.Module, crops: torch.Tensor,
                 landmarks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    lm = landmarks if getattr(model, "uses_landmarks", False) else None
    out = model(model.preprocess(crops), lm)
    return torch.sigmoid(out["au"]), torch.softmax(out["expr"], -1)


@torch.no_grad()
def flip_average(model: nn.Module, crops: torch.Tensor,
                 landmarks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-time flip augmentation: the probabilities of the face and of its mirror image (crop flipped
    horizontally, landmarks mirrored by :func:`mirror_landmarks`), averaged. AUs and expressions are
    left/right-symmetric labels, so a face and its mirror image get the same result; a model's left/right sub-AUs
    (e.g. OpenGraphAU's AUL1/AUR1) are swapped back before averaging (:func:`aufer.schema.au_mirror_order`).

    Args, returns: as :func:`probabilities`.
    """
    p_au, p_e = _single_pass(model, crops, landmarks)
    lm_f = None
    if landmarks is not None and getattr(model, "uses_landmarks", False):
        lm_f = mirror_landmarks(landmarks, crops.shape[-2])
    f_au, f_e = _single_pass(model, crops.flip(-2), lm_f)
    order = au_mirror_order(au_stems(model))  # left/right sub-AUs swap sides in the mirror image
    if len(order) == f_au.shape[-1] and order != list(range(len(order))):
        f_au = f_au[..., order]
    return (p_au + f_au) / 2, (p_e + f_e) / 2


@torch.no_grad()
def probabilities(model: nn.Module, crops: torch.Tensor, landmarks: torch.Tensor | None = None, *,
                  flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference without gradients (the caller sets ``model.eval()``).

    Args:
        crops: uint8 RGB crops ``(B, T, S, S, 3)`` as the face pipeline / store makes them.
        landmarks: ``(B, T, 478, 3)`` in crop pixels; ignored by a model that does not use landmarks.
        flip: average with the mirrored face (:func:`flip_average`); off by default, as in the benchmark
            protocols.

    Returns:
        AU probabilities ``(B, T, A)`` (sigmoid) and expression probabilities ``(B, E)`` (softmax), in [0, 1].

    Raises:
        ValueError: if the model uses landmarks and none are given.
    """
    if flip:
        return flip_average(model, crops, landmarks)
    return _single_pass(model, crops, landmarks)

