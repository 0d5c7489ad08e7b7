"""Issue 25, point 3: outputs of a model with 41 AUs and left/right sub-AUs (OpenGraphAU's layout): one naming
rule for AU columns (aufer.schema.au_stem), the table, ``--format openface``, the figures, the HTML report, the
overlay, and the catalogue of official checkpoints that ``aufer models`` prints. The 41-AU tables are built
synthetically (no OpenGraphAU weights here); the names and their order are the official code's
(OpenGraphAU utils.py ``hybrid_prediction_infolist``)."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from fakes import face_frame, write_video
from typer.testing import CliRunner

from aufer import vocab
from aufer.predict.openface import (
    openface_columns,
    openface_notes,
    read_openface_output,
    write_openface_csv,
)
from aufer.predict.overlay import frame_annotations
from aufer.predict.report import (
    AU_ROW_INCHES,
    format_au_group,
    still_figure,
    strongest_aus,
    timeseries_figure,
)
from aufer.predict.report_html import face_summary, write_html_report
from aufer.schema import (
    au_groups,
    au_label,
    au_mirror_order,
    au_parts,
    au_stem,
    au_stems,
    columns,
    empty_row,
    markdown,
)

MAIN = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 32, 38, 39)
SUB = ("AUL1", "AUR1", "AUL2", "AUR2", "AUL4", "AUR4", "AUL6", "AUR6", "AUL10", "AUR10", "AUL12", "AUR12",
       "AUL14", "AUR14")
OG_NAMES = tuple(f"AU{a}" for a in MAIN) + SUB  # OpenGraphAU's 41 outputs, in its order
EMOTIONS = ()


def og_model(**kw):
    return SimpleNamespace(aus=MAIN, au_names=OG_NAMES, emotions=EMOTIONS, **kw)


# ------------------------------------------------------------------------------------------------ naming
def test_one_naming_rule_for_au_columns():
    assert [au_stem(x) for x in (1, 12, np.int64(4), "AU1", "AU01", "au12", "12", " AU6 ")] == [
        "AU01", "AU12", "AU04", "AU01", "AU01", "AU12", "AU12", "AU06"]
    assert [au_stem(x) for x in ("AUL1", "AUR1", "AUL14", "L10", "R2", "aul6")] == [
        "AU01L", "AU01R", "AU14L", "AU10L", "AU02R", "AU06L"]
    for stem in ("AU01", "AU01L", "AU14R", "AU45"):
        assert au_stem(stem) == stem  # idempotent
    assert au_stem("AU1L") == "AU01L"
    for bad in ("AUL1R", "AU", "happiness", "AUX1", True, "AU1_p"):
        with pytest.raises(ValueError):
            au_stem(bad)
    assert au_parts("AU01L") == (1, "L") and au_parts(12) == (12, "")
    assert au_label("AU12") == "AU12 lip corner puller"
    assert au_label("AUL1") == "AU01L inner brow raiser (left)"
    assert au_label("AU39") == "AU39"  # no FACS name in aufer's table: the stem alone


def test_a_model_is_named_by_its_au_names_else_by_its_aus():
    stems = au_stems(og_model())
    assert len(stems) == 41 and stems[:3] == ("AU01", "AU02", "AU04") and stems[26] == "AU39"
    assert stems[27:] == ("AU01L", "AU01R", "AU02L", "AU02R", "AU04L", "AU04R", "AU06L", "AU06R", "AU10L", "AU10R",
                          "AU12L", "AU12R", "AU14L", "AU14R")
    assert au_stems(SimpleNamespace(aus=(1, 12), emotions=())) == ("AU01", "AU12")  # today's models
    assert au_stems(SimpleNamespace(aus=(1, 12), au_names=(), emotions=())) == ("AU01", "AU12")
    assert au_stems((1, "AUL1")) == ("AU01", "AU01L")
    with pytest.raises(ValueError, match="share"):
        au_stems(("AU1", "AU01"))


def test_the_table_of_a_41_au_model():
    cols = columns(au_stems(og_model()), EMOTIONS)
    au = [c for c in cols if c.startswith("AU")]
    assert len(au) == 82
    assert au[:2] == ["AU01_p", "AU02_p"] and au[27:29] == ["AU01L_p", "AU01R_p"] and au[40] == "AU14R_p"
    assert au[41:43] == ["AU01_c", "AU02_c"] and au[-1] == "AU14R_c"
    assert columns(OG_NAMES, EMOTIONS) == cols == columns(au_stems(og_model()), EMOTIONS)
    assert columns((1, 12), ("happiness",)) == columns(("AU1", "AU12"), ("happiness",))  # ints as before
    row = empty_row(0, 0.0, "x.jpg", OG_NAMES, EMOTIONS)
    assert np.isnan(row["AU14R_p"]) and list(row) == cols


def test_rows_are_filled_by_the_model_s_au_names():
    from aufer.predict.rows import _fill

    row = empty_row(0, 0.0, "x.jpg", au_stems(og_model()), EMOTIONS, status="ok")
    p = np.linspace(0, 1, 41)
    _fill(row, p, np.zeros(0), og_model(), 0.5)
    assert row["AU01_p"] == 0 and row["AU14R_p"] == 1 and row["AU14R_c"] == 1 and row["AU01L_p"] == p[27]
    assert row["emotion"] == ""


def test_mirror_order_swaps_left_and_right():
    order = au_mirror_order(OG_NAMES)
    stems = au_stems(OG_NAMES)
    assert order[:27] == list(range(27))
    assert [stems[i] for i in order[27:29]] == ["AU01R", "AU01L"]
    assert au_mirror_order((1, 2, 12)) == [0, 1, 2]


def test_schema_doc_states_the_rule():
    md = markdown()
    assert "`AU01L_p`" in md and "AUL1" in md and "model_aus_not_in_openface" in md
    doc = Path(__file__).parent.parent / "docs" / "output_schema.md"
    assert doc.read_text() == md


# ------------------------------------------------------------------------------------- a synthetic table
def _table(n_frames: int = 30, still: bool = False, faces=(0,)) -> pd.DataFrame:
    """A 41-AU table: face 0 smiles (AU06, AU12 and their sides), face 1 raises the left brow only."""
    stems = au_stems(og_model())
    rows = []
    rng = np.random.default_rng(0)
    for f in range(n_frames):
        for fid in faces:
            r = empty_row(f, np.nan if still else f / 25, "clip.mp4" if not still else f"img{f}.jpg", stems,
                          EMOTIONS, status="ok")
            r.update({"face_id": fid, "face_detected": True, "success": 1, "confidence": 0.9, "face_score": 0.9,
                      "face_x": 40.0 + 150 * fid, "face_y": 60.0, "face_w": 100.0, "face_h": 110.0})
            ramp = np.sin(np.pi * f / max(n_frames - 1, 1))
            for st in stems:
                n, side = au_parts(st)
                v = 0.05 + 0.1 * rng.random()
                if fid == 0 and n in (6, 12):
                    v = 0.2 + 0.75 * ramp - (0.05 if side == "R" else 0.0)
                if fid == 1 and n == 1 and side == "L":
                    v = 0.9
                r[f"{st}_p"], r[f"{st}_c"] = v, int(v >= 0.5)
            rows.append(r)
    return pd.DataFrame(rows, columns=columns(stems, EMOTIONS))


def test_openface_format_writes_only_openface_s_aus_and_says_which_are_left_out(tmp_path):
    src = tmp_path / "t.csv.partial"
    _table(5).to_csv(src, index=False)
    out = write_openface_csv(src, tmp_path / "t_openface.csv")
    header = out.read_text().splitlines()[0].split(", ")
    c_cols = [c for c in header if c.endswith("_c")]
    assert c_cols == sorted(f"AU{a:02d}_c" for a in MAIN if a in vocab.openface_aus())
    assert "AU11_c" not in header and "AU01L_c" not in header and "AU24_c" not in header
    assert "AU01L_p" in header and "AU24_p" in header and "AU14R_p" in header  # aufer's own columns keep all
    back = read_openface_output(out, threshold=0.5)
    assert [c for c in back.columns if c.endswith("_p")][:3] == ["AU01_p", "AU01L_p", "AU01R_p"]
    assert len([c for c in back.columns if c.endswith("_p")]) == 41
    np.testing.assert_allclose(back["AU12L_p"], _table(5)["AU12L_p"], atol=1e-9)
    assert (back["AU12L_c"] == (back["AU12L_p"] >= 0.5)).all()
    assert back["AU12L_c"].notna().all() and read_openface_output(out)["AU12L_c"].isna().all()

    notes = openface_notes(OG_NAMES)
    left = notes["model_aus_not_in_openface"]
    assert left == ["AU11", "AU13", "AU16", "AU18", "AU19", "AU22", "AU24", "AU27", "AU32", "AU38", "AU39",
                    *au_stems(SUB)]
    assert "AU28_c" in notes["openface_columns_not_written"] and "AU12_c" not in notes[
        "openface_columns_not_written"]
    assert openface_notes((1, 12))["model_aus_not_in_openface"] == []
    assert openface_columns(columns((1, 24), ()))[8:9] == ["AU01_c"]  # AU24: not one of OpenFace's


def test_strongest_aus_count_a_side_pair_with_its_au():
    vals = {"AU01": 0.3, "AU12": 0.8, "AU12L": 0.9, "AU12R": 0.7, "AU06": 0.6, "AU01L": float("nan"), "AU14R": 0.65}
    top = strongest_aus(vals, 3)
    assert [g[0][0] for g in top] == ["AU12", "AU14R", "AU06"]
    assert top[0] == [("AU12", 0.8), ("AU12L", 0.9), ("AU12R", 0.7)]
    assert format_au_group(top[0]) == "AU12 0.80 (L 0.90, R 0.70)"
    assert format_au_group(top[1]) == "AU14 R 0.65" and format_au_group(top[2]) == "AU06 0.60"
    assert format_au_group(top[0], compact=True) == "AU12 0.80 (L.90 R.70)"
    assert format_au_group([("AU12L", 1.0)], compact=True) == "AU12 L1.00"
    assert strongest_aus({"AU01": 0.2, "AU02": 0.2}, 5) == [[("AU01", 0.2)], [("AU02", 0.2)]]  # ties: column order
    assert au_groups(["AU12L", "AU01", "AU12"]) == [(12, ["AU12", "AU12L"]), (1, ["AU01"])]


def test_overlay_lists_the_top_aus_not_41(tmp_path):
    notes = frame_annotations(_table(30, faces=(0, 1)), top_aus=3)
    mid = {a["face_id"]: a["lines"] for a in notes[15]}
    assert len(mid[0]) == 1 + 3 and len(mid[1]) == 1 + 3  # "id N" (no emotion classes here) + 3 AUs of 41
    assert mid[0][1:3] == ["AU06 0.95 (L.95 R.90)", "AU12 0.95 (L.95 R.90)"]
    assert re.fullmatch(r"AU01 0\.\d\d \(L\.90 R\.\d\d\)", mid[1][1]), mid[1][1]


def test_html_report_groups_sides(tmp_path):
    df = _table(20, faces=(0, 1))
    s = face_summary(df, top_aus=2)
    top0 = [st for st, _ in s.set_index("face_id").loc[0, "top_aus"]]
    assert set(top0) == {"AU06", "AU06L", "AU06R", "AU12", "AU12L", "AU12R"}
    out = write_html_report(df, tmp_path / "r.html", title="41 AUs", model_name="fake OpenGraphAU", top_aus=3)
    text = out.read_text()
    assert "(L " in text and "AU12L" not in text.split("<h2>Faces</h2>")[1].split("</table>")[0]


# -------------------------------------------------------------------------------------------- figures
def test_heat_map_grows_with_41_aus_and_keeps_sides_next_to_their_au(tmp_path):
    df = _table(60)
    fig = timeseries_figure(df, "41 AUs")
    heat = fig.axes[0]
    assert heat.collections[0].get_array().shape == (41, 60)
    labels = [t.get_text() for t in heat.get_yticklabels()]
    assert labels[:3] == ["AU01 inner brow raiser", "AU01L inner brow raiser (left)",
                          "AU01R inner brow raiser (right)"]
    assert min(t.get_fontsize() for t in heat.get_yticklabels()) >= 7
    assert fig.get_size_inches()[1] == pytest.approx(AU_ROW_INCHES * 41 + 1.2)  # no emotions: a low panel
    assert "no emotion classes" in fig.axes[1].texts[0].get_text()
    small_df = df[[c for c in df.columns if not c.startswith("AU")] + ["AU01_p", "AU12_p"]]
    small = timeseries_figure(small_df)
    assert small.get_size_inches()[1] == pytest.approx(4.2 + 1.2)  # few AUs: the former heat-map height
    small_emo = timeseries_figure(small_df.assign(emo_happiness=0.5, emo_neutral=0.5))
    assert small_emo.get_size_inches()[1] == pytest.approx(7.0)  # AUs and emotions: the former 12 × 7 in
    from aufer.predict.report import plot_predictions, plot_timeseries

    plot_timeseries(df, tmp_path / "ts41.png", "41 AUs (synthetic)", note="model: fake OpenGraphAU")
    plot_predictions(_table(2, still=True, faces=(0, 1)), tmp_path / "still41.png", "41 AUs, stills")
    assert (tmp_path / "ts41.png").stat().st_size > 0 and (tmp_path / "still41.png").stat().st_size > 0


def test_still_bars_grow_with_41_aus():
    fig = still_figure(_table(1, still=True))
    ax = fig.axes[0]
    assert len(ax.patches) == 41 and fig.get_size_inches()[1] >= AU_ROW_INCHES * 41
    labels = [t.get_text() for t in ax.get_yticklabels()]
    i = labels.index("AU12 lip corner puller")
    assert labels[i:i + 3] == [
        "AU12 lip corner puller", "AU12L lip corner puller (left)", "AU12R lip corner puller (right)"]


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_predict_with_a_41_output_model_writes_the_named_columns(tmp_path, detector):
    """A tiny random model with 41 outputs named as OpenGraphAU's: aufer's CSV and the OpenFace layout."""
    import torch

    from aufer.faces.pipeline import FacePipeline
    from aufer.models import create_model
    from aufer.predict import predict_to_file, read_table

    torch.manual_seed(0)
    net = create_model("aufer_tiny", aus=tuple(range(1, 42)), input_size=32, width=8, dim=16).eval()
    net.au_names = OG_NAMES
    pipe = FacePipeline(crop_size=32, detector=detector)
    video = write_video(tmp_path / "v.mp4", [face_frame(0, shift=i) for i in range(3)])
    df = read_table(predict_to_file(video, net, tmp_path / "v.csv", pipeline=pipe).output)
    assert list(df.columns) == columns(OG_NAMES, net.emotions)
    assert df["AU14R_p"].between(0, 1).all() and df["AU01L_c"].isin([0, 1]).all()
    of = predict_to_file(video, net, tmp_path / "v_of.csv", pipeline=pipe, fmt="openface").output
    header = of.read_text().splitlines()[0].split(", ")
    assert "AU01L_p" in header and "AU01L_c" not in header and "AU11_c" not in header and "AU12_c" in header


def test_models_prints_the_checkpoint_catalogue():
    from aufer.cli import app
    from aufer.models.catalogue import FIELDS, checkpoints, import_command

    entries = checkpoints()
    assert len(entries) >= 10 and len({e["name"] for e in entries}) == len(entries)
    for e in entries:
        missing = [f for f in FIELDS if e.get(f) in (None, "") and f != "aufer_backbone"]
        assert not missing, (e["name"], missing)
        assert e["source_page"] in ("https://github.com/lingjivoo/OpenGraphAU", "https://github.com/CVI-SZU/ME-GraphAU")
        assert e["download"].startswith("https://drive.google.com/file/d/")
        assert e["licence"] == {"OpenGraphAU": "Apache-2.0", "ME-GraphAU": "MIT"}[e["method"]]
        assert e["stage"] in (1, 2) and e["variant"] in ("opengraphau", "bp4d", "disfa")
    og = [e for e in entries if e["method"] == "OpenGraphAU"]
    assert {(e["backbone"], e["stage"]) for e in og} >= {("ResNet-18", 1), ("ResNet-50", 1), ("Swin-Tiny", 1),
                                                         ("ResNet-18", 2), ("ResNet-50", 2), ("Swin-Tiny", 2)}
    assert all(e["n_outputs"] == 41 and "AUL1" in e["au_set"] for e in og)
    assert "RAF-AU" in og[0]["training_data"] and "CASME II" in og[0]["training_data"]
    me = {(e["variant"], e["backbone"]) for e in entries if e["method"] == "ME-GraphAU"}
    assert {("bp4d", "ResNet-50"), ("bp4d", "Swin-Base"), ("disfa", "ResNet-50"), ("disfa", "Swin-Base")} <= me
    r18 = next(e for e in og if e["backbone"] == "ResNet-18" and e["stage"] == 1)
    assert import_command(r18) == ("aufer import graphau CKPT --variant opengraphau --backbone resnet18 --stage 1 "
                                   "--out DIR")
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    for e in entries:
        assert f"checkpoint: {e['name']}" in r.output and e["download"] in r.output
        assert (import_command(e) or "not supported") in r.output
    raw = json.loads(vocab.data_path("checkpoints.json").read_text())
    assert "Nothing here is downloaded" in raw["_about"]


def test_flip_average_keeps_left_and_right_sub_aus_apart():
    """A model whose AUL1 reads the image's left half and AUR1 its right half: the flip average swaps the
    mirrored face's sides back, so a bright left half stays AUL1's (a plain average would blend the two)."""
    import torch
    import torch.nn as nn

    from aufer.models.contract import flip_average

    class Sides(nn.Module):
        aus, au_names, emotions = (1,), ("AU1", "AUL1", "AUR1"), ()

        def preprocess(self, crops):
            return crops.float() / 255

        def forward(self, x, lm=None):
            w = x.shape[-2]
            left, right = x[..., : w // 2, :].mean((-3, -2, -1)), x[..., w // 2:, :].mean((-3, -2, -1))
            logit = lambda p: torch.logit(p.clamp(1e-4, 1 - 1e-4))  # noqa: E731
            au = torch.stack([logit((left + right) / 2), logit(left), logit(right)], -1)
            return {"au": au, "expr": torch.zeros(*x.shape[:1], 1)}

    crops = torch.zeros(1, 1, 8, 8, 3, dtype=torch.uint8)
    crops[..., :4, :] = 230  # the left half (image columns 0-3) bright
    p_au, _ = flip_average(Sides(), crops)
    assert float(p_au[0, 0, 1]) > 0.85 and float(p_au[0, 0, 2]) < 0.05
