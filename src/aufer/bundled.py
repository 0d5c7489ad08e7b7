"""The real, openly licensed data bundled with aufer (see ``aufer/data/ATTRIBUTION.md``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aufer.vocab import data_path

__all__ = ["data_dir", "bundled_faces", "bundled_video", "template_landmarks", "ATTRIBUTION"]


def data_dir() -> Path:
    """Folder of aufer's package data (:func:`aufer.vocab.data_path`)."""
    return data_path()


ATTRIBUTION = "London Set and Young Adult White Faces: DeBruine & Jones (2017), CC BY 4.0; video: Wolfgang Langer on Pexels"


def bundled_faces() -> pd.DataFrame:
    """One row per bundled photo.

    Columns: ``set`` (``london`` | ``canada``), ``face_id``, ``identity`` (``"london/001"``), ``expression``
    (``neutral`` | ``smiling``), ``path``, ``age`` (years), ``gender``, ``ethnicity`` (London only, else "").
    London: 102 people × (neutral, smiling); Canada: 40 people, neutral only. Photos are 512 × 512 pixels.
    """
    root = data_dir() / "faces"
    rows = []
    for set_name in ("london", "canada"):
        info = pd.read_csv(root / set_name / "info.csv", dtype=str).set_index("face_id")
        for expr in ("neutral", "smiling"):
            folder = root / set_name / expr
            if not folder.is_dir():
                continue
            for p in sorted(folder.glob("*.jpg")):
                meta = info.loc[p.stem] if p.stem in info.index else {}
                rows.append({
                    "set": set_name, "face_id": p.stem, "identity": f"{set_name}/{p.stem}", "expression": expr,
                    "path": str(p), "age": float(meta.get("face_age", "nan")), "gender": meta.get("face_gender", ""),
                    "ethnicity": meta.get("face_eth", "") if set_name == "london" else "",
                })
    return pd.DataFrame(rows)


def bundled_video() -> Path:
    """The bundled Pexels video (472 frames, 23.976 fps, 640 × 360, H.264; no labels)."""
    return data_dir() / "video" / "pexels_wolfgang_langer_emotions.mp4"


def template_landmarks() -> pd.DataFrame:
    """Human-placed landmarks of the neutral photos: columns ``set, face_id, expression, point, x, y`` (pixels
    of the 512 × 512 photos). Points 0 and 1 are the image-left and image-right pupil centres."""
    return pd.read_csv(data_dir() / "faces" / "template_landmarks.csv", dtype={"face_id": str})
