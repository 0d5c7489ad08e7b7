"""Face pipeline: detection, 478 landmarks, five-point alignment, crops, tracking."""

from aufer.faces.align import similarity, template, transform_points, warp_crop
from aufer.faces.base import AlignedFace, Face, FaceDetector
from aufer.faces.landmarks import five_points

__all__ = ["AlignedFace", "Face", "FaceDetector", "five_points", "similarity", "template", "transform_points",
           "warp_crop"]
