"""The template method's network: per-frame convolutional features, one logit per AU (SYNTHETIC example).

Shapes: B clips, T frames, A AUs, H = W = ``input_size``. ``forward(clips (B, T, 3, H, W))`` returns ``"au"``
``(B, T, A)`` logits, ``"expr"`` ``(B, 0)`` (an AU-only model: evaluation then reports AU metrics only) and
``"features"`` ``(B, T, D)``. A real method names its equations here (``Eq. 3: …``) and lists every deviation from
its official code with the reason, as :mod:`aufer.methods.mdhr.model` does.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from aufer import vocab
from aufer.models._registry import register_model
from aufer.models.contract import normalise_crops

__all__ = ["TemplateAU", "template_au"]

#: the registered variants ("arch.tag", the first is the default); keys that name factory arguments become that
#: variant's defaults, the others say how to feed the model (aufer.models._registry)
default_cfgs = {
    "template_au.tiny": dict(input_size=32, crop_size=32, norm="imagenet", clip_len=1,
                             aus=list(vocab.dataset_aus("BP4D")), emotions=[]),
}


class TemplateAU(nn.Module):
    """A two-layer CNN, global average pooling and a linear AU head (``head``, as an official code would name it).

    Args:
        aus: AU numbers of the outputs, in order.
        input_size: frame side H = W in pixels.
        width: channels of the first convolution (the second has twice as many; D = 2 · width).
        norm: :func:`aufer.vocab.normalisation` name of the input normalisation.
    """

    uses_landmarks = False

    def __init__(self, aus: Sequence[int], input_size: int = 32, width: int = 8, norm: str = "imagenet"):
        super().__init__()
        self.aus, self.emotions, self.input_size = tuple(int(a) for a in aus), (), int(input_size)
        self.trunk = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(2 * width, len(self.aus))
        mean, std = vocab.normalisation(norm)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, S, S, 3)`` → normalised float ``(B, T, 3, H, W)`` (the contract's shared helper)."""
        return normalise_crops(crops, self.input_size, self.mean, self.std)

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` → ``(B, T, D)``."""
        b, t = clips.shape[:2]
        return self.trunk(clips.flatten(0, 1)).view(b, t, -1)

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        f = self.forward_features(clips)
        return {"au": self.head(f), "expr": f.new_zeros(f.shape[0], 0), "features": f}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the trunk) and ``heads``: the recipe's ``optim.groups.<name>`` set their rates."""
        return {"backbone": list(self.trunk.parameters()), "heads": list(self.head.parameters())}


@register_model
def template_au(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None, input_size: int = 32,
                width: int = 8, norm: str = "imagenet") -> TemplateAU:
    """The template's factory. ``emotions`` is accepted because the engine passes the data's vocabularies to
    every model; an AU-only model ignores it.

    Raises:
        ValueError: no AUs.
    """
    if not aus:
        raise ValueError("template_au needs the AUs it predicts (aus=[...])")
    return TemplateAU(aus, input_size=input_size, width=width, norm=norm)
