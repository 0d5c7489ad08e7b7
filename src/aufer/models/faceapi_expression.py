"""face-api's facial expression network (FaceExpressionNet), ported to plain PyTorch, with its preprocessing.

Source: the npm package ``@vladmandic/face-api`` 1.7.15 (MIT licence; a maintained fork of Vincent Mühler's
``face-api.js``), files ``src/faceExpressionNet/FaceExpressionNet.ts``, ``src/faceProcessor/FaceProcessor.ts``,
``src/faceFeatureExtractor/FaceFeatureExtractor.ts`` and ``denseBlock.ts``, ``src/common/depthwiseSeparableConv.ts``,
``src/dom/NetInput.ts`` (``toBatchTensor``), ``src/ops/padToSquare.ts``, ``src/ops/normalize.ts``,
``src/classes/FaceLandmarks.ts`` (``align`` → ``alignMinBbox``), ``src/classes/Box.ts`` (``pad``,
``clipAtImageBorders``) and ``src/dom/extractFaceTensors.ts``; weights ``model/face_expression_model.bin`` with
its manifest, converted by ``tools/convert_faceapi_expression.py`` into ``aufer/data/models/faceapi-expression/``.
No code of face-api is copied or run here; the computation below is written from reading it.

**The network** (face-api's names; tensors NHWC in face-api, NCHW here; no batch normalisation anywhere):

- input: an RGB face image of any size, as float pixel values in [0, 255];
- ``toBatchTensor(112, isCenterInputs=true)``: pad the shorter side with **zeros** to a square, the larger half
  of the padding after the image (``Math.round(diff / 2)``) and the rest before, then, if the square's side is
  not 112, tfjs's legacy bilinear resize (``align_corners=False``, ``half_pixel_centers=False``: source
  coordinate = output index · in / out, no antialiasing) to 112 × 112;
- ``normalize``: subtract the mean RGB (122.782, 117.001, 104.298), then divide by 255;
- ``dense0`` … ``dense3`` (``denseBlock4``): ``out1 = relu(conv0(x))`` with stride 2, then
  ``out2 = sep1(out1)``, ``out3 = sep2(relu(out1 + out2))``, ``out4 = sep3(relu(out1 + out2 + out3))``,
  returning ``relu(out1 + out2 + out3 + out4)``; ``conv0`` of ``dense0`` is a 3 × 3 convolution 3 → 32 with
  bias, the others are depthwise-separable (3 × 3 depthwise without bias, 1 × 1 pointwise, then a bias).
  Channels 32, 64, 128, 256; sides 112 → 56 → 28 → 14 → 7. Padding is TensorFlow's ``"same"``: total
  ``max((ceil(n / s) − 1)·s + k − n, 0)``, the smaller half before, so a stride-2 3 × 3 convolution on an even
  side pads 0 on the top/left and 1 on the bottom/right;
- ``avgPool(7 × 7, stride 2, "valid")`` on the 7 × 7 map = the mean over it, ``(N, 256)``;
- ``fc`` 256 → 7 and softmax, classes in face-api's order :data:`FACEAPI_LABELS`.

323,687 parameters (uint8-quantised in face-api's file except the biases).

**Framing in aufer.** face-api crops a face by the box of its 68 landmarks, widened by 20 % of the box's width
and height in total (10 % per side), clipped at the image borders and floored to whole pixels, then squared by
the zero padding above. aufer gives the model aligned crops and the 478-point MediaPipe mesh in crop pixels, so
:class:`FaceExpressionNet` takes 68 mesh points that correspond to the iBUG 68 (:data:`MESH_TO_IBUG68`), boxes
them the same way in crop pixels and resamples that box as face-api does.

Deviations from face-api, each with its reason:

1. The 68 points are MediaPipe mesh points, not face-api's own 68-point landmark net (aufer runs MediaPipe). On
   the bundled London photos the two sets of 68 points lie 5.7 % of the eye distance apart on average and the
   padded boxes overlap with IoU 0.905.
2. The box is clipped at the borders of aufer's aligned crop, not of the video frame (the model only receives
   the crop). aufer's alignment leaves about 0.28 of the crop above the padded box but only 0 to 0.1 below it
   (the bundled London photos: 1 of 204 boxes reaches 0.6 % past the bottom), so a wide-open jaw can be
   clipped where face-api would not clip it.
3. The crop is already a resampling of the frame (aufer's similarity warp), so the face is resampled twice. The
   default ``crop_size`` (192) makes the padded box about 136 px, so the second resampling shrinks by ≈ 1.2.
4. Landmarks in aufer are in pixel-centre coordinates (pixel i spans [i − 0.5, i + 0.5]); face-api's box slices
   whole pixels from corner coordinates (pixel i spans [i, i + 1]), so 0.5 is added before the box is floored.
5. Without landmarks (``landmarks=None``), or for a frame whose landmarks are not finite or whose box is empty
   after clipping, the box is :data:`FALLBACK_BOX`, the mean padded box of the bundled London photos in
   aufer's crop (face-api would have no face to classify). The model contract asks a landmark model to raise
   instead; this one falls back because its image path alone is a complete classifier.
6. For clips of T > 1 frames the expression output is the log of the mean of the per-frame probabilities
   (face-api classifies single images only).
7. ``preprocess`` does not resize or normalise: it returns the crop as float pixel values, because the framing
   needs the full crop and the landmarks, and face-api subtracts its mean only after resampling.
8. The shipped weights are stored in float32, not in fp16 as aufer's other shipped model: fp16 cannot hold face-api's
   dequantised uint8 weights and moved the probabilities by up to 4e-4, float32 holds them exactly (1.3 MB), and
   the port then gives face-api's probabilities to 1.2e-7 (``tests/test_faceapi_expression.py``).

**Checked** (``tools/faceapi_fixture.py`` runs face-api 1.7.15 in Node on tfjs 4.22's cpu backend): the
probabilities of six inputs (face crops, noise, a 171 × 150 input that is padded and resized) and tfjs's resize
on tiny images. On the 204 bundled London photos, face-api's own pipeline (SSD detector + its 68-point net, on
tfjs's wasm backend) and this port fed face-api's boxes agree to 6e-6; this port's mesh framing gives boxes with
IoU 0.905 to face-api's and the same top class on 96.6 % of the photos.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer import vocab
from aufer.models._registry import register_model

__all__ = ["FACEAPI_LABELS", "MEAN_RGB", "INPUT_SIZE", "CROP_SIZE", "BOX_PADDING", "MESH_TO_IBUG68", "FALLBACK_BOX",
           "FaceExpressionNet", "tf_same_pad", "resize_bilinear_legacy", "pad_to_square", "to_net_input",
           "mesh_to_ibug68", "landmark_boxes", "clip_box", "fallback_box", "dequantise_weights",
           "state_dict_from_faceapi"]

#: face-api's class order (``FACE_EXPRESSION_LABELS`` in ``src/faceExpressionNet/FaceExpressions.ts``)
FACEAPI_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: mean RGB subtracted from pixel values in [0, 255] before dividing by 255 (``FaceFeatureExtractor.forwardInput``)
MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
#: side of the network input in pixels
INPUT_SIZE = 112
#: default side of aufer's aligned crop for this model: the padded 68-point box is then about 136 px
CROP_SIZE = 192
#: widening of the landmark box, a fraction of its width and height in total (``FaceLandmarks.align``'s
#: ``minBoxPadding``)
BOX_PADDING = 0.2

#: MediaPipe face-mesh index of each of the iBUG / dlib 68 points, in iBUG order (0-16 jaw from the image-left
#: ear to the image-right ear, 17-21 and 22-26 brows, 27-35 nose, 36-41 and 42-47 eyes, 48-59 outer lips,
#: 60-67 inner lips). Source: the correspondence table of Peizhi Yan, "Mediapipe_2_Dlib_Landmarks"
#: (github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks, mediapipe2dlib/mp2dlib.py, 2024). Where that table
#: averages two mesh points (iBUG 3, 4, 12, 27, 28; 0-based), the first of the two is taken here. Only the box
#: of the points is used, i.e. the jaw ends (127, 356), the brow tops and the chin (152).
MESH_TO_IBUG68: tuple[int, ...] = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # image-left brow 17-21
    336, 296, 334, 293, 300,  # image-right brow 22-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144,  # image-left eye 36-41
    362, 385, 387, 263, 373, 380,  # image-right eye 42-47
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)

#: the box (x, y, w, h) used without landmarks, as fractions of the crop side: the mean padded 68-point box of
#: the 204 bundled London photos in aufer's aligned crop (measured with aufer's MediaPipe pipeline at crop side 192,
#: corner coordinates)
FALLBACK_BOX: tuple[float, float, float, float] = (0.152, 0.282, 0.699, 0.684)


# ------------------------------------------------------------------------------------------- preprocessing
def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad an ``(N, C, H, W)`` tensor as TensorFlow's ``padding="same"`` does for a ``kernel`` × ``kernel``
    window at ``stride``: per side length n, total ``max((ceil(n / s) − 1)·s + k − n, 0)``, ``total // 2``
    before (top / left) and the rest after (bottom / right)."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _legacy_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per output index: floor and ceil source indices and the fraction, tfjs ``resizeBilinear`` with
    ``alignCorners=false``, ``halfPixelCenters=false`` (source = index · n_in / n_out, in float64)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor()
    frac = (src - lo).to(torch.float32)
    hi = src.ceil().clamp(max=n_in - 1)
    return lo.long().clamp(min=0).to(device), hi.long().to(device), frac.to(device)


def resize_bilinear_legacy(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """tfjs's ``tf.image.resizeBilinear(x, size, alignCorners=false, halfPixelCenters=false)`` (the legacy
    TensorFlow 1 convention) on ``(..., C, H, W)`` → ``(..., C, h, w)`` with ``(h, w) = size`` (an int: square):
    output pixel (r, c) reads source (r · H / h, c · W / w), interpolates between the floor and the ceil index
    (the ceil clamped to the last row / column), horizontally first. No antialiasing. Unlike
    ``F.interpolate(align_corners=False)``, which uses half-pixel centres."""
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = x.shape[-2:]
    if (h, w) == (oh, ow):
        return x
    r0, r1, fr = _legacy_taps(h, oh, x.device)
    c0, c1, fc = _legacy_taps(w, ow, x.device)
    top, bot = x[..., r0, :], x[..., r1, :]
    top = top[..., c0] + (top[..., c1] - top[..., c0]) * fc
    bot = bot[..., c0] + (bot[..., c1] - bot[..., c0]) * fc
    return top + (bot - top) * fr[:, None]


def pad_to_square(x: torch.Tensor) -> torch.Tensor:
    """face-api's ``padToSquare(x, isCenterImage=true)`` on ``(..., C, H, W)``: zeros along the shorter side
    until H = W, ``round(|H − W| / 2)`` (halves rounded up, as JavaScript's ``Math.round``) after the image and
    the rest before it."""
    h, w = x.shape[-2:]
    diff = abs(h - w)
    if diff == 0:
        return x
    after = math.floor(diff * 0.5 + 0.5)
    before = diff - after
    return F.pad(x, (before, after, 0, 0) if h > w else (0, 0, before, after))


def to_net_input(image: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """face-api's ``NetInput.toBatchTensor(112, true)`` for one image tensor: an RGB image ``(H, W, 3)`` (any
    dtype, pixel values in [0, 255]) → float32 ``(3, size, size)`` in [0, 255], zero-padded to a square
    (:func:`pad_to_square`) and resized by :func:`resize_bilinear_legacy` when its side is not ``size``.

    Raises:
        ValueError: if ``image`` is not ``(H, W, 3)`` with H, W ≥ 1.
    """
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {tuple(image.shape)}")
    return resize_bilinear_legacy(pad_to_square(image.permute(2, 0, 1).float()), size)


def mesh_to_ibug68(landmarks: torch.Tensor) -> torch.Tensor:
    """The 68 iBUG points ``(..., 68, 2)`` (x, y) of MediaPipe mesh landmarks ``(..., 478 or 468, ≥ 2)``, in
    the same units (:data:`MESH_TO_IBUG68`).

    Raises:
        ValueError: if the landmarks are not a mesh of at least 468 points.
    """
    if landmarks.ndim < 2 or landmarks.shape[-2] < 468 or landmarks.shape[-1] < 2:
        raise ValueError(f"expected MediaPipe mesh landmarks (..., 478, 2|3), got shape {tuple(landmarks.shape)}")
    idx = torch.as_tensor(MESH_TO_IBUG68, device=landmarks.device)
    return landmarks[..., idx, :2]


def landmark_boxes(points: torch.Tensor, padding: float = BOX_PADDING) -> torch.Tensor:
    """face-api's ``FaceLandmarks.align()`` (``alignMinBbox``): the box of ``points`` ``(..., K, 2)`` widened by
    ``padding`` × its width and height in total, half on each side → ``(..., 4)`` float64 ``x, y, w, h`` in the
    points' units (corner coordinates: see :func:`clip_box`)."""
    p = points.detach().to(torch.float64)
    lo, hi = p.amin(-2), p.amax(-2)
    size = hi - lo
    return torch.cat([lo - padding * size / 2, size * (1 + padding)], -1)


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """face-api's ``Box.clipAtImageBorders(width, height)``: ``x, y`` raised to 0, the right and bottom edges
    lowered to the image's, then x, y, w, h each floored → whole-pixel ``(x, y, w, h)``, the slice
    ``[y : y + h, x : x + w]`` of an image ``height`` × ``width`` pixels. w or h may come out ≤ 0 (a box outside
    the image). Coordinates are corner coordinates (pixel i spans [i, i + 1])."""
    x, y, w, h = (float(v) for v in box)
    cx, cy = max(x, 0.0), max(y, 0.0)
    cw, ch = min(x + w - cx, width - cx), min(y + h - cy, height - cy)
    return math.floor(cx), math.floor(cy), math.floor(cw), math.floor(ch)


def fallback_box(side: int) -> tuple[float, float, float, float]:
    """:data:`FALLBACK_BOX` for a crop ``side`` pixels wide, in pixels ``(x, y, w, h)``."""
    return tuple(v * side for v in FALLBACK_BOX)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ network
class SeparableConv(nn.Module):
    """face-api's ``depthwiseSeparableConv``: 3 × 3 depthwise convolution (no bias), 1 × 1 pointwise convolution,
    then the bias (held by ``pointwise``), with TF "same" padding; ``(N, C_in, H, W)`` → ``(N, C_out, H', W')``
    with H' = ceil(H / stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(tf_same_pad(x, 3, self.stride)))


class DenseBlock4(nn.Module):
    """face-api's ``denseBlock4`` (``isScaleDown=true``): ``conv0`` at stride 2 (a plain 3 × 3 convolution with
    bias in the first block, else separable), then three separable convolutions, each fed the ReLU of the sum of
    all earlier outputs; returns the ReLU of the sum of the four. ``(N, C_in, H, W)`` → ``(N, C_out, H/2, W/2)``.
    """

    def __init__(self, c_in: int, c_out: int, first: bool = False):
        super().__init__()
        self.first = first
        self.conv0 = nn.Conv2d(c_in, c_out, 3, 2) if first else SeparableConv(c_in, c_out, 2)
        self.conv1 = SeparableConv(c_out, c_out)
        self.conv2 = SeparableConv(c_out, c_out)
        self.conv3 = SeparableConv(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(tf_same_pad(x, 3, 2)) if self.first else self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class FaceExpressionNet(nn.Module):
    """face-api's FaceExpressionNet (FaceFeatureExtractor + ``fc``) behind aufer's model contract
    (:mod:`aufer.models.contract`); see the module docstring for the computation and the deviations.

    Args:
        emotions: aufer emotion names of the outputs, in order; each must be one of the 7 face-api classes
            (spellings as :func:`aufer.vocab.canonical_emotion` maps them). Default: :data:`aufer.vocab.EMOTIONS_7`.
            A subset renormalises the probabilities over it.
        box_padding: widening of the landmark box (face-api: 0.2).

    Attributes (the contract): ``aus = ()``, ``emotions``, ``uses_landmarks = True``, ``input_size = 112``.

    Shapes: B clips, T frames, S crop side, E emotions.

    Raises:
        ValueError: an emotion that face-api does not classify, or a repeated one.
    """

    uses_landmarks = True

    def __init__(self, emotions: Sequence[str] | None = None, box_padding: float = BOX_PADDING):
        super().__init__()
        names = tuple(vocab.canonical_emotion(e) for e in (emotions or vocab.EMOTIONS_7))
        ours = tuple(vocab.canonical_emotion(e) for e in FACEAPI_LABELS)
        bad = [e for e in names if e not in ours]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"face-api classifies {', '.join(ours)}; cannot output {names} "
                             f"({'unknown: ' + ', '.join(bad) if bad else 'repeated names'})")
        self.aus: tuple[int, ...] = ()
        self.emotions = names
        self.input_size = INPUT_SIZE
        self.box_padding = float(box_padding)
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)
        self.fc = nn.Linear(256, len(FACEAPI_LABELS))
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("order", torch.tensor([ours.index(e) for e in names]), persistent=False)
        self.config: dict[str, Any] = {}
        self.default_cfg: dict[str, Any] = {"input_size": INPUT_SIZE, "crop_size": CROP_SIZE, "clip_len": 1,
                                            "aus": [], "emotions": list(names)}

    # ---------------------------------------------------------------- face-api's computation on 112 × 112 input
    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """FaceFeatureExtractor: framed RGB faces ``(N, 3, 112, 112)``, float pixel values in [0, 255] (what
        :func:`to_net_input` returns) → ``(N, 256)`` features (the 7 × 7 average pool of ``dense3``).

        Raises:
            ValueError: if the input is not ``(N, 3, 112, 112)``.
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected framed faces (N, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {tuple(x.shape)}")
        x = (x.float() - self.mean_rgb) / 255.0
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return F.avg_pool2d(x, 7, 2).flatten(1)

    def faceapi_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``fc`` on :meth:`bottleneck`: ``(N, 3, 112, 112)`` in [0, 255] → ``(N, 7)`` logits in face-api's class
        order :data:`FACEAPI_LABELS` (``FaceProcessor.runNet``)."""
        return self.fc(self.bottleneck(x))

    def faceapi_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """What face-api's ``FaceExpressionNet.forward`` returns for already-framed faces: ``(N, 3, 112, 112)``
        float pixel values in [0, 255] → softmax probabilities ``(N, 7)`` in face-api's order
        :data:`FACEAPI_LABELS`. For an image of another size, frame it with :func:`to_net_input` first."""
        return torch.softmax(self.faceapi_logits(x), -1)

    # ------------------------------------------------------------------------------------ framing in aufer
    def face_boxes(self, landmarks: torch.Tensor | None, n: int, side: int) -> list[tuple[int, int, int, int]]:
        """The whole-pixel box ``(x, y, w, h)`` of each of ``n`` faces in crops ``side`` pixels wide: the padded
        box of the 68 mesh points (:func:`mesh_to_ibug68`, :func:`landmark_boxes`, +0.5 to corner
        coordinates) clipped by :func:`clip_box`; :func:`fallback_box` where ``landmarks`` is None, not finite
        or gives an empty box.

        Args:
            landmarks: ``(n, 478, 2|3)`` (any leading shape with n faces) in crop pixels (pixel-centre
                coordinates) or None.

        Raises:
            ValueError: landmarks that are not a mesh of at least 468 points.
        """
        boxes: list[tuple[int, int, int, int]] = []
        pad = None
        if landmarks is not None:
            pts = mesh_to_ibug68(landmarks.detach().cpu().to(torch.float64).reshape(n, *landmarks.shape[-2:]))
            pad = landmark_boxes(pts + 0.5, self.box_padding)
        for i in range(n):
            box = None
            if pad is not None and bool(torch.isfinite(pad[i]).all()):
                box = clip_box(pad[i].tolist(), side, side)
            if box is None or box[2] <= 0 or box[3] <= 0:
                box = clip_box(fallback_box(side), side, side)
            boxes.append(box)
        return boxes

    def frame(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """face-api's face framing on aufer crops: ``clips`` ``(B, T, 3, S, S)`` float pixel values (what
        :meth:`preprocess` returns) and ``landmarks`` ``(B, T, 478, 3)`` in crop pixels or None → framed faces
        ``(B·T, 3, 112, 112)`` in [0, 255]: each frame's box (:meth:`face_boxes`) sliced, zero-padded to a
        square and resized (:func:`pad_to_square`, :func:`resize_bilinear_legacy`).

        Raises:
            ValueError: crops that are not square, or landmarks that are not a mesh.
        """
        b, t, _, s, s2 = clips.shape
        if s != s2:
            raise ValueError(f"expected square crops (B, T, 3, S, S), got {tuple(clips.shape)}")
        x = clips.reshape(b * t, 3, s, s).float()
        boxes = self.face_boxes(landmarks, b * t, s)
        return torch.stack([resize_bilinear_legacy(pad_to_square(x[i, :, y0:y0 + h, x0:x0 + w]), INPUT_SIZE)
                            for i, (x0, y0, w, h) in enumerate(boxes)])

    # ------------------------------------------------------------------------------------------ the contract
    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops ``(B, T, S, S, 3)`` → float32 ``(B, T, 3, S, S)``, pixel values kept in [0, 255]: not
        resized to 112 and not normalised, unlike the contract's usual ``preprocess`` (deviation 7 of the module
        docstring); :meth:`forward` frames, resizes and normalises.

        Raises:
            ValueError: if ``crops`` is not ``(B, T, S, S, 3)``.
        """
        if crops.ndim != 5 or crops.shape[-1] != 3:
            raise ValueError(f"expected uint8 crops (B, T, S, S, 3), got shape {tuple(crops.shape)}")
        return crops.permute(0, 1, 4, 2, 3).float()

    def forward_features(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, S, S)`` from :meth:`preprocess` [+ ``(B, T, 478, 3)`` crop-pixel landmarks] → the
        FaceFeatureExtractor's features ``(B, T, 256)``."""
        b, t = clips.shape[:2]
        return self.bottleneck(self.frame(clips, landmarks)).reshape(b, t, -1)

    def forward(self, clips: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``clips`` ``(B, T, 3, S, S)`` from :meth:`preprocess`, ``landmarks`` ``(B, T, 478, 3)`` in crop pixels
        or None (then :data:`FALLBACK_BOX`) → ``{"au": (B, T, 0), "expr": (B, E), "features": (B, T, 256)}``.

        ``"expr"`` is the log of face-api's softmax probabilities, averaged over the T frames, in the order of
        ``emotions``: ``softmax(expr)`` gives face-api's probabilities back (renormalised over ``emotions``).
        Each frame is framed by its own landmarks (:meth:`frame`).

        Raises:
            ValueError: as :meth:`frame`.
        """
        b, t = clips.shape[:2]
        f = self.forward_features(clips, landmarks)
        logp = torch.log_softmax(self.fc(f), -1)[..., self.order]  # (B, T, E)
        expr = torch.logsumexp(logp, 1) - math.log(t)
        return {"au": f.new_zeros(b, t, 0), "expr": expr, "features": f}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (the four dense blocks) and ``heads`` (``fc``)."""
        return {"backbone": [p for n, p in self.named_parameters() if not n.startswith("fc.")],
                "heads": list(self.fc.parameters())}


# ------------------------------------------------------------------------------------- face-api's weight files
def dequantise_weights(manifest: list[dict], shard: bytes) -> dict[str, np.ndarray]:
    """Decode a tfjs weights manifest and its concatenated shard(s) as tfjs's ``io.decodeWeights`` does:
    tensors in manifest order, each ``prod(shape)`` values; a ``quantization`` entry of dtype ``uint8`` stores
    one byte q per value, decoded as ``q · scale + min`` (float64, then float32); ``float32`` entries are
    little-endian 4-byte floats.

    Args:
        manifest: the parsed ``*-weights_manifest.json`` (a list of groups with ``"weights"``).
        shard: the bytes of the group's ``paths``, concatenated in order.

    Returns:
        ``{name: float32 array of the manifest's shape}`` in TF layouts (e.g. ``dense0/conv0/filters`` HWIO).

    Raises:
        ValueError: an unsupported dtype or quantisation, or a shard that is shorter or longer than the
            manifest says.
    """
    out: dict[str, np.ndarray] = {}
    pos = 0
    for group in manifest:
        for entry in group["weights"]:
            shape = [int(d) for d in entry["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = entry.get("quantization")
            if q is not None:
                if q.get("dtype") != "uint8" or entry.get("dtype") != "float32":
                    raise ValueError(f"{entry['name']}: unsupported quantisation {q}")
                raw = np.frombuffer(shard, np.uint8, n, pos) if pos + n <= len(shard) else None
                pos += n
                if raw is not None:
                    vals = (raw.astype(np.float64) * float(q["scale"]) + float(q["min"])).astype(np.float32)
            elif entry.get("dtype") == "float32":
                raw = np.frombuffer(shard, "<f4", n, pos) if pos + 4 * n <= len(shard) else None
                pos += 4 * n
                if raw is not None:
                    vals = raw.astype(np.float32)
            else:
                raise ValueError(f"{entry['name']}: unsupported dtype {entry.get('dtype')!r}")
            if raw is None:
                raise ValueError(f"weights shard too short: {len(shard)} bytes, {entry['name']} needs up to byte {pos}")
            out[entry["name"]] = vals.reshape(shape)
    if pos != len(shard):
        raise ValueError(f"weights shard has {len(shard)} bytes, the manifest describes {pos}")
    return out


def state_dict_from_faceapi(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """face-api's named tensors (TF layouts, :func:`dequantise_weights`) → a :class:`FaceExpressionNet` state
    dict: ``dense{i}/conv0/filters`` HWIO → ``dense{i}.conv0.weight`` OIHW, ``…/depthwise_filter`` (H, W, C, 1)
    → ``….depthwise.weight`` (C, 1, H, W), ``…/pointwise_filter`` (1, 1, C_in, C_out) → ``….pointwise.weight``
    (C_out, C_in, 1, 1), ``…/bias`` → ``conv0.bias`` or ``….pointwise.bias``, ``fc/weights`` (in, out) →
    ``fc.weight`` (out, in), ``fc/bias`` → ``fc.bias``.

    Raises:
        KeyError: a tensor name that is not FaceExpressionNet's.
    """
    out: dict[str, torch.Tensor] = {}
    for name, arr in tensors.items():
        a = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        parts = name.split("/")
        if parts == ["fc", "weights"]:
            out["fc.weight"] = a.t().contiguous()
        elif parts == ["fc", "bias"]:
            out["fc.bias"] = a
        elif len(parts) == 3 and parts[0].startswith("dense"):
            block, conv, kind = parts
            if kind == "filters":
                out[f"{block}.{conv}.weight"] = a.permute(3, 2, 0, 1).contiguous()
            elif kind == "depthwise_filter":
                out[f"{block}.{conv}.depthwise.weight"] = a.permute(2, 3, 0, 1).contiguous()
            elif kind == "pointwise_filter":
                out[f"{block}.{conv}.pointwise.weight"] = a.permute(3, 2, 0, 1).contiguous()
            elif kind == "bias":
                plain = (block, conv) == ("dense0", "conv0")  # the one convolution that is not separable
                out[f"{block}.{conv}.bias" if plain else f"{block}.{conv}.pointwise.bias"] = a
            else:
                raise KeyError(f"unknown face-api tensor {name!r}")
        else:
            raise KeyError(f"unknown face-api tensor {name!r}")
    return out


# ------------------------------------------------------------------------------------------------ registry
#: the registered variant: face-api 1.7.15's weights, shipped in aufer/data/models/faceapi-expression/
default_cfgs = {
    "faceapi_expression.v1_7_15": dict(
        input_size=INPUT_SIZE, crop_size=CROP_SIZE, clip_len=1, aus=[], emotions=list(vocab.EMOTIONS_7),
        box_padding=BOX_PADDING, mean_rgb=list(MEAN_RGB), scale=1 / 255, faceapi_labels=list(FACEAPI_LABELS),
        source="npm @vladmandic/face-api@1.7.15 model/face_expression_model.bin (MIT)"),
}


@register_model
def faceapi_expression(aus: Sequence[int] | None = None, emotions: Sequence[str] | None = None,
                       box_padding: float = BOX_PADDING) -> FaceExpressionNet:
    """face-api's FaceExpressionNet (:class:`FaceExpressionNet`), random weights; load face-api's with
    ``aufer.models.load_model(aufer.vocab.data_path("models/faceapi-expression"))``.

    ``aus`` is accepted because the engine passes the data's vocabularies to every model; the network has no
    AU outputs, so it must be empty or None.

    Raises:
        ValueError: AUs were asked for, or an emotion face-api does not classify.
    """
    if aus:
        raise ValueError(f"faceapi_expression has no AU outputs; got aus={list(aus)}")
    return FaceExpressionNet(emotions, box_padding=box_padding)

