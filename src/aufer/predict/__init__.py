"""Predictions on the user's own images and videos: ``aufer predict`` and :func:`aufer.detect`.

The public entry point is :func:`predict` (``aufer.detect``): one row per frame and face, with AU probabilities,
AU presence, emotion probabilities, head pose and landmarks (columns: ``docs/output_schema.md``). The package:

* :mod:`.rows` — the rows: faces through the model, :func:`predict`, :func:`iter_predictions`, and the resumable
  file writer :func:`predict_to_file` (CSV / Parquet);
* :mod:`.windows` — clip models (T-frame windows over each face track);
* :mod:`.jobs` — output planning, output-path checks and locks;
* :mod:`.cli` — what ``aufer predict`` does behind its options;
* :mod:`.report`, :mod:`.report_html`, :mod:`.overlay` — figures, the offline HTML report, the overlay video;
* :mod:`.label_aus` — a model's per-frame AUs written into an expression store (``aufer label-aus``).

The names below are served from :mod:`.rows` on first use (PEP 562), so that ``aufer predict`` can check its
inputs and outputs (:mod:`.jobs`) before PyTorch is imported.
"""

import importlib

__all__ = ["predict", "detect", "iter_predictions", "predict_to_file", "predict_to_csv", "read_table", "columns",
           "PredictResult", "SCHEMA_VERSION"]

_FROM_ROWS = frozenset(__all__) - {"detect"}


def __getattr__(name: str):
    """``predict``, ``iter_predictions`` … from :mod:`aufer.predict.rows` (``detect`` is ``predict``)."""
    if name in _FROM_ROWS or name == "detect":
        rows = importlib.import_module("aufer.predict.rows")
        return getattr(rows, "predict" if name == "detect" else name)
    raise AttributeError(f"module 'aufer.predict' has no attribute {name!r}")
