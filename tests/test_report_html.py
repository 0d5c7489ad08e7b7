"""Still-image figures (aufer.predict.report) and the self-contained HTML report (aufer.predict.report_html)."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import aufer
from aufer.predict.report import MAX_STILL_FACES, plot_predictions, predictions_figure, still_figure
from aufer.models.shipped import DEFAULT_MODEL
from aufer.predict.report_html import DEFAULT_WARNING, card_limits, face_summary, write_html_report

AUS = ["AU01_p", "AU04_p", "AU12_p"]
EMOS = ["emo_neutral", "emo_happiness", "emo_sadness"]
ODD_NAME = "a<b>&ü.mp4"
CARD = Path(aufer.__file__).parent / "data" / "models" / DEFAULT_MODEL / "MODEL_CARD.md"


def _row(rng, frame, t, file, fid, detected=True):
    row = {"frame": frame, "timestamp_s": t, "file": file, "face_id": fid if detected else -1,
           "face_x": 10.0, "face_y": 12.0, "face_w": 40.0, "face_h": 44.0, "face_score": 0.9,
           "face_detected": detected, "pose_yaw": 5.0}  # pose_yaw: an optional extra column
    if detected:
        e = rng.random(len(EMOS))
        e /= e.sum()
        row.update(dict(zip(AUS, rng.random(len(AUS)))))
        row.update({f"{c[:-2]}_c": int(row[c] >= 0.5) for c in AUS})
        row.update(dict(zip(EMOS, e)))
        row["emotion"] = EMOS[int(e.argmax())][4:]
    else:
        row.update({c: np.nan for c in AUS + EMOS})
        row["emotion"] = ""
    return row


def _stills(n_faces=2, seed=0):
    """One face per image, plus an image without a face at the end (NaN timestamps: stills)."""
    rng = np.random.default_rng(seed)
    rows = [_row(rng, i, np.nan, f"dir/img{i}.jpg", 0) for i in range(n_faces)]
    rows.append(_row(rng, n_faces, np.nan, "dir/empty.jpg", -1, detected=False))
    return pd.DataFrame(rows)


def _video(seed=0, n=10, ids=(0, 3), missing=()):
    """len(ids) faces × n frames at 25 fps; (frame, id) pairs in ``missing`` are not detected."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n):
        present = [i for i in ids if (f, i) not in missing]
        rows += [_row(rng, f, f / 25, ODD_NAME, i) for i in present] or [_row(rng, f, f / 25, ODD_NAME, -1, False)]
    return pd.DataFrame(rows)


# --- still_figure / predictions_figure ------------------------------------------------------------------------

def test_still_figure_bars_are_the_probabilities():
    df = _stills(2)
    fig = still_figure(df, title="t", note="n")
    assert len(fig.axes) == 2 * 2  # two faces, AU and emotion panels each
    for k in range(2):
        au_ax, emo_ax = fig.axes[2 * k], fig.axes[2 * k + 1]
        np.testing.assert_allclose([p.get_width() for p in au_ax.patches], df.loc[k, AUS].to_numpy(float))
        np.testing.assert_allclose([p.get_width() for p in emo_ax.patches], df.loc[k, EMOS].to_numpy(float))
        assert f"img{k}.jpg" in au_ax.get_title() and "face 0" in au_ax.get_title()
        assert [t.get_text() for t in emo_ax.get_yticklabels()] == ["neutral", "happiness", "sadness"]
        assert au_ax.get_yticklabels()[2].get_text() == "AU12 lip corner puller"
        assert not au_ax.get_lines()


def test_still_figure_caps_faces_and_says_so():
    fig = still_figure(_stills(MAX_STILL_FACES + 3))
    assert len(fig.axes) == 2 * MAX_STILL_FACES
    assert f"{MAX_STILL_FACES} of {MAX_STILL_FACES + 3}" in fig.get_suptitle()
    assert "of" not in still_figure(_stills(3)).get_suptitle()


def test_still_figure_without_faces_or_au_columns():
    empty = _stills(0)
    (ax,) = still_figure(empty).axes
    assert "no face detected in 1 image" in " ".join(t.get_text() for t in ax.texts)
    emo_only = _stills(2).drop(columns=AUS)
    fig = still_figure(emo_only)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == len(EMOS)


@pytest.mark.filterwarnings("error")
def test_plot_predictions_bars_for_stills_lines_for_video(tmp_path):
    still = predictions_figure(_stills(2))
    assert still.axes[0].patches and not any(ax.get_lines() for ax in still.axes)
    video = predictions_figure(_video())
    assert len(video.axes[1].get_lines()) == len(EMOS)
    assert not video.axes[1].patches
    for name, df in (("still.png", _stills(2)), ("video.png", _video())):
        df = df.assign(file="\u9854 \U0001F600.jpg")  # glyphs missing from DejaVu Sans: no warning may leak
        out = plot_predictions(df, tmp_path / name, title=f"{ODD_NAME} \u9854 \U0001F600", note="model x")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_face_detected_read_as_text_counts_like_bools():
    df = _stills(2)
    text = df.assign(face_detected=df["face_detected"].map(str))  # "True"/"False", e.g. a CSV read as strings
    assert len(still_figure(text).axes) == len(still_figure(df).axes) == 4
    assert list(face_summary(text)["face_id"]) == [0, 0]
    nan_flag = df.assign(face_detected=[True, np.nan, False])
    assert len(still_figure(nan_flag).axes) == 2


# --- face_summary, card_limits -------------------------------------------------------------------------------

def test_face_summary_counts_and_means():
    df = _video(n=10, missing={(f, 3) for f in range(6)})  # face 3 only in frames 6-9
    s = face_summary(df, top_aus=2)
    assert list(s["face_id"]) == [0, 3]
    assert list(s["frames_seen"]) == [10, 4]
    np.testing.assert_allclose(s["share_detected"], [1.0, 0.4])
    g = df[df.face_id == 3]
    np.testing.assert_allclose(s.loc[1, EMOS].to_numpy(float), g[EMOS].mean().to_numpy())
    assert s.loc[1, "top_emotion"] == g[EMOS].mean().idxmax()[4:]
    means = g[AUS].mean().sort_values(ascending=False)
    assert [a for a, _ in s.loc[1, "top_aus"]] == [c[:-2] for c in means.index[:2]]
    assert s.loc[1, "top_aus"][0][1] == pytest.approx(means.iloc[0])
    stills = face_summary(_stills(3))  # stills: one row per (file, face), each seen in its one frame
    assert list(stills["file"]) == [f"dir/img{i}.jpg" for i in range(3)] and set(stills["share_detected"]) == {1.0}
    assert face_summary(_stills(0)).empty
    with pytest.raises(ValueError, match="face_id"):
        face_summary(df.drop(columns="face_id"))


def test_card_limits_of_the_default_card_and_of_headed_cards():
    lim = card_limits(CARD.read_text())
    assert lim.startswith("**Known failures**") and "**Do not trust it for**" in lim
    assert "Trained on" not in lim and "Held-out" not in lim
    headed = "# M\n\nintro\n\n## Limitations\n- no profile faces\n\n### detail\nmore\n\n## Training\nx\n"
    assert card_limits(headed) == "## Limitations\n- no profile faces\n\n### detail\nmore"
    assert card_limits(None) == "" and card_limits("# M\n\nnothing here") == ""


# --- write_html_report -----------------------------------------------------------------------------------------

THUMBS = {0: np.full((24, 20, 3), (230, 20, 20), np.uint8), 3: np.full((24, 20, 3), (20, 20, 230), np.uint8)}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "reports" / "report.html"
    meta = {"input": f"/data/{ODD_NAME}", "options": {"flip": True, "note": "<script>x</script>"}, "frames": 10}
    path = write_html_report(_video(seed=1), out, title=f"Report of {ODD_NAME}", model_name=DEFAULT_MODEL,
                             model_card_text=CARD.read_text(), thumbnails=THUMBS, meta=meta)
    return path, path.read_text(encoding="utf-8")


def test_html_report_is_self_contained_and_escaped(report):
    path, text = report
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # written atomically, nothing left over
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/") for s in srcs)  # the figure and two thumbnails
    assert "a&lt;b&gt;&amp;ü.mp4" in text and ODD_NAME not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert "id 0" in text and "id 3" in text
    assert DEFAULT_WARNING.split(":")[0] in text and "SYNTHETIC" in text
    assert "<strong>Known failures</strong>" in text and "<strong>Do not trust it for</strong>" in text
    assert f"<td>{aufer.__version__}</td>" in text


def test_html_report_thumbnails_decode_to_the_given_images(report):
    cv2 = pytest.importorskip("cv2")
    _, text = report
    thumbs = re.findall(r'<figure><img alt="id (\d+)" src="data:image/jpeg;base64,([^"]+)"', text)
    assert [fid for fid, _ in thumbs] == ["0", "3"]
    for fid, b64 in thumbs:
        bgr = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert bgr.shape == (24, 20, 3)
        np.testing.assert_allclose(bgr[..., ::-1].reshape(-1, 3).mean(0), THUMBS[int(fid)][0, 0], atol=6)


@pytest.mark.filterwarnings("error")
def test_html_report_summary_table_and_stills(tmp_path):
    df = _video(seed=2, missing={(f, 3) for f in range(5)})
    text = write_html_report(df, tmp_path / "r.html", title="t \u9854 \U0001F600", model_name="m",
                             warning="").read_text(encoding="utf-8")
    assert "<h1>t \u9854 \U0001F600</h1>" in text
    assert 'class="warn"' not in text  # warning="" leaves it out
    assert "<td class=num>50%</td>" in text and "<td class=num>100%</td>" in text
    assert "The model card states no limits." in text and "<h2>Metadata</h2>" not in text
    still = write_html_report(_stills(2), tmp_path / "s.html", title="s", model_name="m", limits="**no** <x>",
                              thumbnails={("dir/img1.jpg", 0): THUMBS[0]}).read_text(encoding="utf-8")
    assert "img1.jpg · id 0" in still and "<strong>no</strong> &lt;x&gt;" in still
    assert 'class="warn"' in still


def test_html_report_rejects_bad_thumbnails_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="face 0"):
        write_html_report(_video(), tmp_path / "r.html", title="t", model_name="m",
                          thumbnails={0: np.zeros((8, 8, 3), np.float32)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install chromium); cannot render the HTML report")
def test_html_report_renders_in_headless_chromium(report, tmp_path):
    cv2 = pytest.importorskip("cv2")
    path, _ = report
    shot = tmp_path / "shot.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1200,2000", path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (2000, 1200)
    assert img.std() > 20
    top = img[:400]
    assert (top.min(axis=2) < 200).mean() > 0.01  # title, header table and warning text are drawn
    rgb = img[..., ::-1].astype(int)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    blue = (rgb[..., 2] > 180) & (rgb[..., 0] < 80) & (rgb[..., 1] < 80)
    assert red.sum() > 2000 and blue.sum() > 2000  # the inline thumbnails are shown (offline data: URIs)


# --- thumbnails: one per face and per file ---------------------------------------------------------------------

def _faces_table(rows):
    """A table with only what face_thumbnails reads: (frame, timestamp, file, face_id, score, box)."""
    cols = ["frame", "timestamp_s", "file", "face_id", "face_score", "face_x", "face_y", "face_w", "face_h"]
    df = pd.DataFrame(rows, columns=cols)
    df["face_detected"] = df["face_id"] >= 0
    return df


COLOURS = {"a.png": (220, 30, 30), "b.png": (30, 200, 30), "c.png": (30, 30, 220)}


def test_a_folder_gets_a_thumbnail_per_face_and_per_file(tmp_path):
    from aufer.predict.cli import face_thumbnails
    from fakes import write_image

    for name, colour in COLOURS.items():
        img = np.full((120, 160, 3), 90, np.uint8)
        img[20:60, 10:50] = colour          # face 0 of each file
        img[60:110, 100:150] = 255 - np.array(colour, np.uint8)  # face 1 of a.png only
        write_image(tmp_path / name, img)
    rows = [(0, np.nan, str(tmp_path / "a.png"), 0, 0.9, 14, 24, 32, 32),
            (0, np.nan, str(tmp_path / "a.png"), 1, 0.8, 105, 65, 40, 40),
            (1, np.nan, str(tmp_path / "b.png"), 0, 0.9, 14, 24, 32, 32),
            (2, np.nan, str(tmp_path / "c.png"), -1, np.nan, np.nan, np.nan, np.nan, np.nan)]  # no face
    df = _faces_table(rows)
    thumbs = face_thumbnails(df, "folder", tmp_path)
    assert list(thumbs) == [("a.png", 0), ("a.png", 1), ("b.png", 0)]  # every file's faces, not one file's
    for (name, fid), t in thumbs.items():
        assert t.shape == (96, 96, 3) and t.dtype == np.uint8
        want = np.array(COLOURS[name]) if fid == 0 else 255 - np.array(COLOURS[name])
        np.testing.assert_allclose(t[48, 48], want, atol=3)
    assert list(face_thumbnails(df, "folder", tmp_path, limit=2)) == [("a.png", 0), ("a.png", 1)]
    text = write_html_report(df.assign(emotion=""), tmp_path / "r.html", title="t", model_name="m",
                             thumbnails=face_thumbnails(df, "folder", tmp_path, limit=2)).read_text(encoding="utf-8")
    assert "a.png · id 0" in text and "a.png · id 1" in text and "b.png · id 0" not in text
    assert "thumbnails of 2 of the 3 faces" in text


def test_a_video_gets_a_thumbnail_per_track_at_its_best_frame(tmp_path):
    from aufer.predict.cli import face_thumbnails
    from fakes import write_video

    frames = []
    for k in range(4):
        img = np.full((96, 128, 3), 90, np.uint8)
        img[10:50, 10:50] = (220, 30, 30) if k == 2 else (200, 200, 200)  # track 0 is red in frame 2 only
        img[40:90, 70:120] = (30, 30, 220)  # track 5
        frames.append(img)
    src = write_video(tmp_path / "v.mp4", frames)
    rows = [(k, k / 25, str(src), 0, 0.99 if k == 2 else 0.5, 10, 10, 40, 40) for k in range(4)]
    rows += [(k, k / 25, str(src), 5, 0.7, 72, 42, 46, 46) for k in range(1, 3)]
    thumbs = face_thumbnails(_faces_table(rows), "video", src)
    assert sorted(thumbs) == [0, 5]
    assert thumbs[0][48, 48, 0] > 150 and thumbs[0][48, 48, 1] < 90  # cut from frame 2, its best score
    assert thumbs[5][48, 48, 2] > 150
