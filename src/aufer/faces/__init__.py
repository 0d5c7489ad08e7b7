"""Face pipeline: detection, 478 landmarks, five-point alignment, crops, tracking."""

from aufer.faces.align import five_points, similarity, template, transform_points, warp_crop
from aufer.faces.base import AlignedFace, Face, FaceDetector

__all__ = ["AlignedFace", "Face", "FaceDetector", "five_points", "similarity", "template", "transform_points",
           "warp_crop"]
