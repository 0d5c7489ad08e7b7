"""SYNTHETIC FACS-warp data: AU-labelled clips made by warping real neutral photos, held in memory as a
:class:`~aufer.synth.clipset.ClipSet` and entering training only through a face store (:meth:`ClipSet.to_store`).
Never imported by the readers or the engine.

A real neutral photo is turned into an expressive one by moving its MediaPipe mesh landmarks with a per-AU
displacement pattern (:mod:`.patterns`) and warping the image piecewise-affinely over a triangulation of the mesh
(:mod:`.render`); an opened mouth shows drawn teeth, a dark cavity and maybe a tongue (:mod:`.mouth`). The motion is
synthetic (a geometric caricature of each AU: no wrinkles or bulges; the mouth interior is drawn, not seen), and
every clip set made here (:mod:`.make`) carries :data:`SYNTHETIC_NOTE`. AU combinations and intensity curves come
from :mod:`.sample`. Everything is deterministic for a seed.
"""

from aufer.synth.clipset import ClipSet
from aufer.synth.make import SYNTHETIC_NOTE, make_au_clips, make_expression_clips, realise
from aufer.synth.patterns import AU_PATTERNS, SYNTH_AUS, Handle, target_motion
from aufer.synth.render import SYNTH_VERSION, BaseFace, render
from aufer.synth.sample import (OCCURRENCE_THRESHOLD, au_clip_intensities, intensity_curve, occurrence, sample_au_peaks,
                                sample_expression_peaks)

__all__ = [
    "ClipSet", "SYNTHETIC_NOTE", "SYNTH_AUS", "SYNTH_VERSION", "OCCURRENCE_THRESHOLD", "Handle", "AU_PATTERNS",
    "BaseFace", "render", "intensity_curve", "sample_au_peaks", "sample_expression_peaks", "au_clip_intensities",
    "target_motion", "occurrence", "realise", "make_au_clips", "make_expression_clips",
]
