"""A self-contained HTML report of a prediction table: one file that opens offline in any browser.

Everything is inline: the figure of :func:`aufer.predict.report.predictions_figure` and the face thumbnails are base64
``data:`` images, the style sheet is a ``<style>`` block, and there is no JavaScript and no external URL. Every
string taken from the data (file names, metadata, the model card) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import pandas as pd

import aufer
from aufer.predict.report import (
    format_au_group,
    predictions_figure,
    quiet_glyphs,
    strongest_aus,
    table_columns,
)
from aufer.schema import au_groups, face_mask

__all__ = ["write_html_report", "face_summary", "card_limits", "DEFAULT_WARNING"]

#: the warning line shown under the header unless ``warning=`` says otherwise
DEFAULT_WARNING = ("Caution: the AU training motion of this model is SYNTHETIC (geometric warps of neutral photos: "
                   "no wrinkles or bulges, drawn teeth). Read the AU probabilities as indicative, not as FACS coding, and "
                   "do not base any decision about a person on this report.")

_MAX_TABLE_ROWS = 200

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1180px;
color:#1d1d1f;background:#fff;line-height:1.4;padding:0 12px}
h1{font-size:1.6em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f2f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff4e5;border-left:5px solid #e67e22;padding:8px 12px;margin:12px 0;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;text-align:center;font-size:.85em}
.thumbs img{width:112px;height:auto;border:1px solid #bbb;image-rendering:auto}
.scroll{max-width:100%;overflow-x:auto}img.fig{max-width:100%;height:auto;border:1px solid #eee}.muted{color:#666;font-size:.85em}
pre{white-space:pre-wrap;font-size:.8em;background:#f7f7f9;padding:8px}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _aufer_version() -> str:
    v = getattr(aufer, "__version__", None)
    if v:
        return str(v)

    try:
        return metadata.version("aufer")
    except metadata.PackageNotFoundError:
        return "unknown"


def face_summary(df: pd.DataFrame, top_aus: int = 5) -> pd.DataFrame:
    """One row per detected face: a track in a video, a (file, face) pair for stills.

    Args:
        df: a table of :func:`aufer.predict.columns`; needs ``frame`` and ``face_id``; ``file``,
            ``face_detected``, ``AUxx_p`` and ``emo_*`` are used when present (extra columns are ignored).
        top_aus: how many AUs (highest mean probability) to list per face; a left/right sub-AU pair counts with
            its AU (:func:`aufer.predict.report.strongest_aus`).

    Returns:
        Columns ``file`` (empty string without a ``file`` column), ``face_id``, ``frames_seen`` (frames in which
        the face was detected), ``share_detected`` (``frames_seen`` / frames of that file, 0–1), the mean of each
        ``emo_*`` column, ``top_emotion`` (highest mean; empty without emotion columns) and ``top_aus`` (a list of
        ``(AU code, mean probability)``, strongest AU first; an AU's sub-AUs right after it, e.g. ``AU12, AU12L,
        AU12R``, so a model with sub-AUs may list more than ``top_aus`` entries); sorted by ``frames_seen`` (descending), then file and
        ``face_id``. Empty (with these columns) when no face was detected.

    Raises:
        ValueError: if ``frame`` or ``face_id`` is missing, or ``top_aus`` < 0.
    """
    emo_cols, au_cols = table_columns(df, ("frame", "face_id"), top_aus)
    files = df["file"].astype(str) if "file" in df.columns else pd.Series("", index=df.index)
    n_frames = pd.DataFrame({"file": files, "frame": df["frame"]}).groupby("file")["frame"].nunique()
    faces = df[face_mask(df)].assign(file=files)
    out_cols = ["file", "face_id", "frames_seen", "share_detected", *emo_cols, "top_emotion", "top_aus"]
    rows = []
    for (f, fid), g in faces.groupby(["file", "face_id"], sort=False):
        seen = int(g["frame"].nunique())
        row = {"file": f, "face_id": int(fid), "frames_seen": seen, "share_detected": seen / int(n_frames[f])}
        means = g[emo_cols].apply(pd.to_numeric, errors="coerce").mean() if emo_cols else pd.Series(dtype=float)
        row.update({c: float(means[c]) for c in emo_cols})
        row["top_emotion"] = str(means.idxmax())[4:] if len(means) and means.notna().any() else ""
        au = g[au_cols].apply(pd.to_numeric, errors="coerce").mean().dropna() if au_cols else pd.Series(dtype=float)
        groups = strongest_aus({str(c)[:-2]: float(v) for c, v in au.items()}, top_aus)
        row["top_aus"] = [(st, v) for g in groups for st, v in g]
        rows.append(row)
    out = pd.DataFrame(rows, columns=out_cols)
    if len(out):
        out = out.sort_values(["frames_seen", "file", "face_id"], ascending=[False, True, True], kind="stable")
    return out.reset_index(drop=True)


_LIMIT_WORDS = re.compile(r"limit|known failure|do not trust|do not use|caveat|out of scope", re.I)


def card_limits(card_text: str | None) -> str:
    """The limits of a model card (Markdown): the sections whose heading names them (``## Limitations``,
    ``## Known failures`` …) and the paragraphs that open with such a bold lead (``**Known failure**: …``,
    ``**Do not trust it for**: …``), joined by blank lines; ``""`` when there are none or no card."""
    if not card_text:
        return ""
    parts: list[str] = []
    lines = card_text.splitlines()
    i = 0
    while i < len(lines):  # sections under a heading that names the limits, up to the next heading of its level
        m = re.match(r"^(#+)\s+(.*)", lines[i])
        if m and _LIMIT_WORDS.search(m.group(2)):
            level, j = len(m.group(1)), i + 1
            while j < len(lines) and not re.match(rf"^#{{1,{level}}}\s", lines[j]):
                j += 1
            parts.append("\n".join(lines[i:j]).strip())
            i = j
        else:
            i += 1
    if not parts:
        for para in re.split(r"\n\s*\n", card_text):
            lead = re.match(r"^\s*\*\*(.+?)\*\*", para)
            if lead and _LIMIT_WORDS.search(lead.group(1)):
                parts.append(para.strip())
    return "\n\n".join(parts)


_BULLET = re.compile(r"^\s*[-*]\s+")


def _inline(line: str) -> str:
    x = _e(line)
    x = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", x)
    x = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", x)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", x)


def _md(text: str) -> str:
    """A tiny, safe Markdown subset → HTML: escapes everything first, then paragraphs, ``- `` lists, ``#``
    headings (as bold lines), ``**bold**`` and ```code```."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = [ln for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(_BULLET.match(ln) for ln in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(_BULLET.sub('', ln))}</li>" for ln in lines) + "</ul>")
            continue
        parts: list[str] = []  # wrapped lines join into one line; headings and bullets start a new one
        joinable = False
        for ln in lines:
            if ln.lstrip().startswith("#"):
                parts.append(f"<strong>{_inline(ln.lstrip().lstrip('#').strip())}</strong>")
                joinable = False
            elif _BULLET.match(ln):
                parts.append("&bull; " + _inline(_BULLET.sub("", ln)))
                joinable = True
            elif joinable:
                parts[-1] += " " + _inline(ln.strip())
            else:
                parts.append(_inline(ln.strip()))
                joinable = True
        out.append("<p>" + "<br>\n".join(parts) + "</p>")
    return "\n".join(out)


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    with quiet_glyphs():
        fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_data_uri(img: np.ndarray, key) -> str:
    a = np.asarray(img)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape[:2]:
        raise ValueError(f"thumbnail of face {key!r}: expected an RGB uint8 array (H, W, 3), got {a.dtype} "
                         f"{a.shape}")
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGR if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - OpenCV encodes any non-empty uint8 image
        raise ValueError(f"thumbnail of face {key!r} could not be encoded")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _table(header: list[str] | None, rows: list[list], num: set[int] = frozenset()) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>\n" if header else ""
    body = "".join("<tr>" + "".join(f"<td{' class=num' if j in num else ''}>{_e(v)}</td>" for j, v in enumerate(r))
                   + "</tr>\n" for r in rows)
    return f"<div class=\"scroll\"><table>\n{head}{body}</table></div>"  # a wide table scrolls, the page does not


def _top_aus_text(top: list) -> str:
    """:func:`face_summary`'s ``top_aus`` as one cell: ``AU12 0.81 (L 0.84, R 0.77), AU06 0.55``; a sub-AU pair
    stays with its AU."""
    values = dict(top)
    return ", ".join(format_au_group([(st, values[st]) for st in g]) for _, g in au_groups(values))


def _meta_value(v) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return "" if v is None else str(v)


def _input_label(df: pd.DataFrame, meta: Mapping) -> str:
    if meta.get("input"):
        return str(meta["input"])
    if "file" not in df.columns or not len(df):
        return "(unknown)"
    files = list(dict.fromkeys(df["file"].astype(str)))
    return ", ".join(files[:3]) + (f" … and {len(files) - 3} more files" if len(files) > 3 else "")


def write_html_report(df: pd.DataFrame, out_html: str | Path, *, title: str, model_name: str,
                      model_card_text: str | None = None, limits: str | None = None,
                      thumbnails: Mapping | None = None, meta: Mapping | None = None,
                      warning: str | None = None, top_aus: int = 5) -> Path:
    """Write one self-contained HTML report of a prediction table (no external URL, no JavaScript).

    Sections: header (input, model, aufer version, frame counts), a warning line (``warning``; default
    :data:`DEFAULT_WARNING` about the synthetic AU training motion), the figure of
    :func:`aufer.predict.report.predictions_figure` (bars for stills, time series for a video) as an inline PNG, the
    per-face summary of :func:`face_summary` (at most 200 rows shown), a strip of face thumbnails with their ids,
    the model card's limits and the full card (collapsed), and ``meta`` as a table.

    Args:
        df: a table of :func:`aufer.predict.columns` (one row per frame and face); extra columns are ignored.
        out_html: the file to write; its folder is created. Written atomically (a ``.partial`` file, then
            :func:`os.replace`), so a reader never sees half a report.
        title: the page and figure title. ``model_name``: shown in the header and under the figure.
        model_card_text: the model card (Markdown), e.g. :func:`aufer.models.shipped.model_card`; shown collapsed.
        limits: the limits text (Markdown subset); None = :func:`card_limits` of ``model_card_text``.
        thumbnails: face id → RGB ``uint8`` array ``(H, W, 3)`` (e.g. the aligned crop of the face's
            highest-score frame), inlined as JPEG; keys are ``(file, face_id)`` for stills, so that a folder
            shows one thumbnail per face of every file (:func:`aufer.predict.cli.face_thumbnails`). When there
            are fewer thumbnails than faces in the summary, the report says how many are shown.
        meta: extra facts printed as a two-column table (nested values as JSON); ``meta["input"]``, when given,
            is the input shown in the header (else the ``file`` values of ``df``).
        warning: the warning line; None = :data:`DEFAULT_WARNING`, ``""`` = none.
        top_aus: how many of the strongest AUs the summary lists per face.

    Returns:
        ``Path(out_html)``.

    Raises:
        ValueError: if ``df`` lacks ``frame`` or ``face_id``, or a thumbnail is not a uint8 image array.
        OSError: if the file cannot be written (no partial file is left behind).
    """
    out_html, meta = Path(out_html), dict(meta or {})
    summary = face_summary(df, top_aus=top_aus)
    emo_cols = [c for c in summary.columns if str(c).startswith("emo_")]
    n_frames = int(df["frame"].nunique())
    n_face_frames = int(df.loc[face_mask(df), "frame"].nunique())
    thumbs = [(k, _image_data_uri(v, k)) for k, v in (thumbnails or {}).items()]  # bad input fails first
    fig_uri = _png_data_uri(predictions_figure(df, title, note=f"model: {model_name}"))
    limits = card_limits(model_card_text) if limits is None else limits
    warning = DEFAULT_WARNING if warning is None else warning

    p = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{_e(title)}</title>\n"
         f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>{_CSS}</style>\n"
         f"</head>\n<body>\n<h1>{_e(title)}</h1>"]
    p.append(_table(None, [["input", _input_label(df, meta)], ["model", model_name],
                           ["aufer version", _aufer_version()],
                           ["frames", f"{n_frames} ({n_face_frames} with a face)"], ["faces", len(summary)]]))
    if warning:
        p.append(f"<p class=\"warn\" id=\"warning\">{_e(warning)}</p>")
    p.append(f"<h2>Predictions</h2>\n<img class=\"fig\" alt=\"AU and emotion probabilities\" src=\"{fig_uri}\">")
    p.append("<h2>Faces</h2>")
    if len(summary):
        header = ["file", "face id", "frames seen", "share of frames detected", *[c[4:] for c in emo_cols],
                  "top emotion", f"strongest AUs (mean p, top {top_aus})"]
        rows = [[Path(r["file"]).name, r["face_id"], r["frames_seen"], f"{r['share_detected']:.0%}",
                 *[f"{r[c]:.2f}" for c in emo_cols], r["top_emotion"],
                 _top_aus_text(r["top_aus"])]
                for _, r in summary.iloc[:_MAX_TABLE_ROWS].iterrows()]
        num = {2, 3, *range(4, 4 + len(emo_cols))}
        p.append("<p class=\"muted\">Emotion columns: mean probability over the frames in which the face was "
                 "detected.</p>\n" + _table(header, rows, num))
        if len(summary) > _MAX_TABLE_ROWS:
            p.append(f"<p class=\"muted\">showing {_MAX_TABLE_ROWS} of {len(summary)} faces (most frames first); "
                     "the prediction table holds all.</p>")
    else:
        p.append("<p>No face was detected.</p>")
    if thumbs:
        p.append("<h2>Detected faces</h2>\n<div class=\"thumbs\">")
        for k, uri in thumbs:
            cap = f"{Path(str(k[0])).name} · id {k[1]}" if isinstance(k, tuple) and len(k) == 2 else f"id {k}"
            p.append(f"<figure><img alt=\"{_e(cap)}\" src=\"{uri}\"><figcaption>{_e(cap)}</figcaption></figure>")
        p.append("</div>")
        if len(thumbs) < len(summary):
            p.append(f"<p class=\"muted\" id=\"thumbs-shown\">thumbnails of {len(thumbs)} of the {len(summary)} "
                     "faces</p>")
    p.append("<h2>Model limits</h2>")
    p.append(_md(limits) if limits.strip() else "<p class=\"muted\">The model card states no limits.</p>")
    if model_card_text:
        p.append(f"<details><summary>Full model card</summary><pre>{_e(model_card_text)}</pre></details>")
    if meta:
        p.append("<h2>Metadata</h2>\n" + _table(["key", "value"], [[k, _meta_value(v)] for k, v in meta.items()]))
    p.append("</body>\n</html>\n")

    out_html.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_html.with_name(out_html.name + ".partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(p))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_html)
    finally:
        tmp.unlink(missing_ok=True)
    return out_html
