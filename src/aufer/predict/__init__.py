"""Predictions on the user's own images and videos: ``aufer predict`` and :func:`aufer.detect`.

The public entry point is :func:`predict` (``aufer.detect``): one row per frame and face, with AU probabilities,
AU presence, emotion probabilities, head pose and landmarks (columns: ``docs/output_schema.md``). The package:

* :mod:`.rows` — the rows: faces through the model, :func:`predict`, :func:`iter_predictions`, and the resumable
  file writer :func:`predict_to_file` (CSV / Parquet / OpenFace layout);
* :mod:`.defaults` — the face-detection defaults shared by ``aufer predict`` and :func:`predict` (at most 8
  faces per frame) and the warning of a frame that reached that cap;
* :mod:`.cache` — the default model and face pipelines, set up once per process for :func:`predict`;
* :mod:`.inputs` — what :func:`predict` accepts (paths; greyscale, RGB or RGBA arrays);
* :mod:`.openface` — ``--format openface``: OpenFace 2.x's CSV columns and conventions;
* :mod:`.windows` — clip models (T-frame windows over each face track);
* :mod:`.jobs` — output planning, output-path checks and locks;
* :mod:`.cli` — what ``aufer predict`` does behind its options;
* :mod:`.report`, :mod:`.report_html`, :mod:`.overlay` — figures, the offline HTML report, the overlay video;
* :mod:`.label_aus` — a model's per-frame AUs written into an expression store (``aufer label-aus``).

The names below are served on first use (PEP 562), so that ``aufer predict`` can check its inputs and outputs
(:mod:`.jobs`) before PyTorch is imported.
"""

import importlib

__all__ = ["predict", "detect", "iter_predictions", "predict_to_file", "predict_to_csv", "read_table", "columns",
           "PredictResult", "SCHEMA_VERSION", "clear_cache", "FaceCapWarning", "DEFAULT_MAX_FACES"]

_SERVED = {**{n: ("aufer.predict.rows", n) for n in ("predict", "iter_predictions", "predict_to_file",
                                                     "predict_to_csv", "read_table", "columns", "PredictResult",
                                                     "SCHEMA_VERSION")},
           "detect": ("aufer.predict.rows", "predict"), "clear_cache": ("aufer.predict.cache", "clear_cache"),
           "FaceCapWarning": ("aufer.predict.defaults", "FaceCapWarning"),
           "DEFAULT_MAX_FACES": ("aufer.predict.defaults", "DEFAULT_MAX_FACES")}


def __getattr__(name: str):
    """``predict``, ``iter_predictions`` … from :mod:`aufer.predict.rows` (``detect`` is ``predict``),
    ``clear_cache`` from :mod:`aufer.predict.cache`, ``FaceCapWarning`` and ``DEFAULT_MAX_FACES`` from
    :mod:`aufer.predict.defaults`."""
    if name in _SERVED:
        module, attr = _SERVED[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'aufer.predict' has no attribute {name!r}")
