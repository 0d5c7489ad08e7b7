"""What :func:`aufer.detect` accepts as ``inputs``, and in-memory images turned into the RGB the face pipeline
takes (a leaf of :mod:`aufer.predict`: numpy only).

Accepted:

* a path (``str`` or :class:`os.PathLike`: an image, a folder of images, a video) or a list of paths;
* one image as a ``uint8`` numpy array: ``(H, W)`` greyscale (or ``(H, W, 1)``), ``(H, W, 3)`` RGB or
  ``(H, W, 4)`` RGBA (alpha is dropped); a ``(N, H, W, C)`` stack of such images; or a list of image arrays.

OpenCV's ``cv2.imread`` gives BGR: convert it first (``cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)``); the channel order
cannot be told from the array.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aufer.media import MediaError

__all__ = ["as_rgb", "split_inputs", "WHAT_TO_PASS"]

#: the accepted inputs, in the words of the error messages
WHAT_TO_PASS = ("pass a path (image, folder or video), a list of paths, or images as uint8 numpy arrays of shape "
                "(H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA (or a list / an (N, H, W, C) stack of them)")


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return f"an object of type {type(x).__name__}"


def as_rgb(image, index: int = 0) -> np.ndarray:
    """One in-memory image as a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Args:
        image: ``(H, W)`` or ``(H, W, 1)`` greyscale (copied to the three channels), ``(H, W, 3)`` RGB or
            ``(H, W, 4)`` RGBA (alpha dropped, not blended), dtype uint8, H and W ≥ 1.
        index: the image's position in the call, for the error message.

    Raises:
        aufer.media.MediaError: anything else, in one line that says what to pass.
    """
    a = np.asarray(image) if not isinstance(image, np.ndarray) else image
    shape_ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))
    if not shape_ok or a.dtype != np.uint8 or a.shape[0] == 0 or a.shape[1] == 0:
        hint = ""
        if a.dtype.kind == "f":
            hint = "; for 0-1 floats use (np.clip(x, 0, 1) * 255).astype(np.uint8)"
        elif a.dtype.kind in "iu" and a.dtype != np.uint8:
            hint = "; for 16-bit images use (x >> 8).astype(np.uint8)"
        raise MediaError(f"image array {index}: got {_describe(a)}; expected uint8 of shape (H, W) greyscale, "
                         f"(H, W, 3) RGB or (H, W, 4) RGBA{hint}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def split_inputs(inputs) -> tuple[str, list]:
    """Sort out what :func:`aufer.detect` was given.

    Returns:
        ``("paths", [Path, ...])`` or ``("arrays", [(H, W, 3) uint8 RGB, ...])`` (an empty list gives
        ``("paths", [])``).

    Raises:
        aufer.media.MediaError: paths and arrays mixed, an array that is not an image (see :func:`as_rgb`), or
            something that is neither a path nor an image array — one line that says what to pass.
    """
    if _is_path(inputs):
        return "paths", [Path(inputs)]
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 4:  # a stack of images
            return "arrays", [as_rgb(x, i) for i, x in enumerate(inputs)]
        if inputs.ndim == 3 and inputs.shape[2] not in (1, 3, 4):
            raise MediaError(f"got {_describe(inputs)}: a 3-D array is one image; pass uint8 of shape (H, W) "
                             "greyscale, (H, W, 3) RGB or (H, W, 4) RGBA, and several greyscale images as a list "
                             "of (H, W) arrays")
        return "arrays", [as_rgb(inputs, 0)]
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        raise MediaError(f"cannot analyse {_describe(inputs)}; {WHAT_TO_PASS}")
    paths = [x for x in items if _is_path(x)]
    if len(paths) == len(items):
        return "paths", [Path(x) for x in items]
    if paths:
        raise MediaError("pass either paths or image arrays, not both in one call")
    bad = [i for i, x in enumerate(items) if not isinstance(x, np.ndarray)]
    if bad:
        raise MediaError(f"input {bad[0]} is {_describe(items[bad[0]])}; {WHAT_TO_PASS}")
    return "arrays", [as_rgb(x, i) for i, x in enumerate(items)]
