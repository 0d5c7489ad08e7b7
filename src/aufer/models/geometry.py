"""Landmark-geometry features of the MediaPipe mesh.

The mesh is put in a pose- and scale-normalised frame by a least-squares similarity fitted on points that
expressions hardly move (eye corners, nose ridge), so that what remains is the shape change the face makes:
raised brows, lip corners pulled up, a dropped jaw.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from aufer.faces import landmarks as L

__all__ = ["normalise_landmarks", "LandmarkEncoder"]

_RIGID = torch.tensor(L.RIGID)


def normalise_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """``(..., 478, 2|3)`` landmarks (any pixel units) → ``(..., 478, 2)`` in a frame where the rigid points have
    centroid 0, RMS radius 1 and the eye-corner line is horizontal."""
    xy = landmarks[..., :2].float()
    rigid = xy[..., _RIGID, :]
    centre = rigid.mean(-2, keepdim=True)
    scale = (rigid - centre).pow(2).sum(-1).mean(-1, keepdim=True).sqrt().unsqueeze(-1).clamp_min(1e-6)
    eye = (xy[..., L.EYE_R_OUTER, :] + xy[..., L.EYE_R_INNER, :] - xy[..., L.EYE_L_OUTER, :] - xy[..., L.EYE_L_INNER, :])
    ang = torch.atan2(eye[..., 1], eye[..., 0])
    c, s = torch.cos(-ang)[..., None], torch.sin(-ang)[..., None]
    p = (xy - centre) / scale
    return torch.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], -1)


class LandmarkEncoder(nn.Module):
    """MLP on normalised mesh coordinates: ``(N, 478, 2|3)`` → ``(N, D)``.

    The input is standardised by running statistics (BatchNorm) so that the network sees deviations from the
    mean face shape.
    """

    def __init__(self, out_dim: int = 128, hidden: int = 256, dropout: float = 0.2, n_points: int = L.N_LANDMARKS):
        super().__init__()
        self.norm = nn.BatchNorm1d(2 * n_points)
        self.mlp = nn.Sequential(nn.Linear(2 * n_points, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim), nn.GELU())
        self.out_dim = out_dim

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(normalise_landmarks(landmarks).flatten(1)))
