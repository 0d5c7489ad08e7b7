"""Clip models (T frames per forward pass, e.g. MDHR) in ``aufer predict``: a sliding window over each tracked
face, in constant memory, and every frame still gets exactly one row.

Rule, per face track (:class:`TrackWindows`):

* the track's aligned crops are buffered in frame order; when ``window`` (T) frames are buffered the model runs
  on them and the rows of all T frames get their predictions (the first window of a track);
* after that, every ``stride`` new frames the model runs on the last T frames and the ``stride`` newest frames
  get their predictions (each frame is predicted once, with T − stride frames of past context). ``stride = T``
  (the default of MDHR's cfg, ``eval_stride``) gives non-overlapping T-frame chunks, as the official test code;
* at a discontinuity — the track is missing from a frame, or the media ends — the frames not yet predicted are
  run at once: on the last T frames if the track has that many, else on what it has padded with copies of its
  last frame to T (the official test code pads a chunk that crosses a discontinuity with the last frame; the
  padded frames' outputs are dropped);
* a clip-level expression output (``"expr"``), if the model has one, is given to every frame of its window.

Rows leave in frame order: a row waits until its window has run, so at most about T frames of rows are held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["TrackWindows", "WindowScheduler"]


@dataclass
class TrackWindows:
    """The buffered frames of one face track: ``(row, crop (S, S, 3), landmarks (478, 3))`` in frame order;
    ``done`` counts how many of them already have predictions. ``last_frame`` is the frame index of the newest."""

    items: list = field(default_factory=list)
    done: int = 0
    since: int = 0       # frames added since the last window ran
    last_frame: int = -1


class WindowScheduler:
    """Runs a T-frame model over the face tracks of a frame stream (module docstring for the rule).

    Args:
        run: ``run(crops (B, T, S, S, 3) uint8, landmarks (B, T, 478, 3) float32) -> (p_au (B, T, A), p_e (B, E))``.
        fill: ``fill(row, p_au (A,), p_e (E,))`` writes one frame's predictions into its row.
        window: T, frames per forward pass (≥ 1). stride: frames between windows of a track, 1 ≤ stride ≤ T.

    Raises:
        ValueError: for a window < 1 or a stride outside 1..T.
    """

    def __init__(self, run, fill, window: int, stride: int | None = None):
        stride = window if stride is None else stride
        if window < 1 or not 1 <= stride <= window:
            raise ValueError(f"need window ≥ 1 and 1 ≤ stride ≤ window, got window {window}, stride {stride}")
        self.run, self.fill, self.window, self.stride = run, fill, int(window), int(stride)
        self.tracks: dict[int, TrackWindows] = {}

    def add_frame(self, frame_index: int, faces: list[tuple[dict, object]]) -> None:
        """The faces of the next frame: ``[(row, aligned_face)]`` (``aligned_face.face_id`` is the track id).
        Tracks that are not in this frame are run to their end first (a discontinuity)."""
        seen = {int(a.face_id) for _, a in faces}
        jobs = [self._flush_job(k) for k in list(self.tracks) if k not in seen]
        for row, a in faces:
            tr = self.tracks.setdefault(int(a.face_id), TrackWindows())
            tr.items.append((row, a.crop, a.landmarks.astype(np.float32)))
            tr.last_frame, tr.since = frame_index, tr.since + 1
            job = self._due_job(tr)
            if job:
                jobs.append(job)
        self._execute([j for j in jobs if j])
        for k in [k for k, tr in self.tracks.items() if k not in seen and tr.done == len(tr.items)]:
            del self.tracks[k]

    def finish(self) -> None:
        """End of the media: every track's remaining frames are run."""
        self._execute([j for j in (self._flush_job(k) for k in list(self.tracks)) if j])
        self.tracks.clear()

    # -------------------------------------------------------------------------------------------- internals
    def _due_job(self, tr: TrackWindows):
        t = self.window
        if tr.done == 0 and len(tr.items) >= t:
            return tr, tr.items[-t:], t          # the first window: all T frames get predictions
        if tr.done and tr.since >= self.stride and len(tr.items) >= t:
            return tr, tr.items[-t:], len(tr.items) - tr.done
        return None

    def _flush_job(self, k: int):
        tr = self.tracks[k]
        todo = len(tr.items) - tr.done
        if todo <= 0:
            return None
        win = tr.items[-self.window:]
        return tr, win, todo

    def _execute(self, jobs: list) -> None:
        """Run the windows of ``jobs`` = [(track, window items, n newest to fill)] in one batch."""
        if not jobs:
            return
        t = self.window
        crops, lms, real = [], [], []
        for _, win, _ in jobs:
            pad = t - len(win)
            c = [w[1] for w in win] + [win[-1][1]] * pad   # pad with the last frame (official test code)
            lm = [w[2] for w in win] + [win[-1][2]] * pad
            crops.append(np.stack(c))
            lms.append(np.stack(lm))
            real.append(len(win))
        p_au, p_e = self.run(torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(lms)))
        for (tr, win, n_new), pa, pe, n_real in zip(jobs, p_au, p_e, real):
            for j in range(n_real - n_new, n_real):  # the newest n_new real frames of the window
                self.fill(win[j][0], pa[j], pe)
            tr.done = len(tr.items)
            tr.since = 0
            keep = max(t - 1, 0)  # past context for the next window
            if len(tr.items) > keep:
                drop = len(tr.items) - keep
                tr.items = tr.items[drop:]
                tr.done -= drop
