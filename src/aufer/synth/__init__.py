"""SYNTHETIC FACS-warp data: AU-labelled clips made by warping real neutral photos (:mod:`.facs_warp`), held
in memory as a :class:`~aufer.synth.clipset.ClipSet` and entering training only through a face store
(:meth:`ClipSet.to_store`). Never imported by the readers or the engine."""

from aufer.synth.clipset import ClipSet
from aufer.synth.facs_warp import *  # noqa: F403  (the public names of the FACS-warp generator)
from aufer.synth.facs_warp import __all__ as _warp_all

__all__ = ["ClipSet", *_warp_all]
