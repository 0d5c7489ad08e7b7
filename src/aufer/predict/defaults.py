"""The face-detection defaults of ``aufer predict`` and :func:`aufer.detect`, defined once for both (a leaf module:
it imports nothing, so the command line can use it before PyTorch loads).

A frame may hold more faces than :data:`DEFAULT_MAX_FACES`; the faces kept are those with the highest detector
scores, and a run in which some frame reached the cap says so (:class:`FaceCapWarning` in Python, a ``warning:``
line on stderr and in the sidecar's ``warnings`` for the command line).
"""

__all__ = ["DEFAULT_MAX_FACES", "DEFAULT_MIN_FACE_SCORE", "DEFAULT_DETECTOR_RANGE", "FaceCapWarning", "cap_message"]

#: faces kept per frame at most (highest detector score first), for ``aufer predict`` and ``aufer.detect``
DEFAULT_MAX_FACES = 8
#: face detector threshold in (0, 1]
DEFAULT_MIN_FACE_SCORE = 0.5
#: the BlazeFace models the MediaPipe detector runs: ``short``, ``full`` or ``both``
DEFAULT_DETECTOR_RANGE = "both"


class FaceCapWarning(UserWarning):
    """Some frame held as many faces as ``max_faces`` allows: there may have been more faces in it."""


def cap_message(source: str, frames_at_cap: int, n_frames: int, first_frame: int, max_faces: int) -> str:
    """The one-line warning for a run in which ``frames_at_cap`` of ``n_frames`` frames (the first: frame index
    ``first_frame``) held ``max_faces`` faces."""
    return (f"{source}: {frames_at_cap} of {n_frames} frame(s) hold {max_faces} faces, the most kept per frame "
            f"(max_faces = {max_faces}; first: frame {first_frame}); any faces beyond the {max_faces} best-scored ones "
            f"are not in the table; rerun with --max-faces {2 * max_faces} (Python: max_faces={2 * max_faces}) "
            "to keep more")
