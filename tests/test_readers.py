"""Dataset readers on tiny format-faithful fakes (tests/fakes.py), and the LayoutError each kind of damage raises."""

import shutil

import numpy as np
import pytest
from fakes import (make_fake_au_csv, make_fake_bp4d, make_fake_dfew, make_fake_disfa, make_fake_expr_csv,
                   make_fake_ferv39k, make_fake_mafw)

from aufer import vocab
from aufer.readers.bp4d import read_bp4d
from aufer.readers.dfew import read_dfew
from aufer.readers.disfa import read_disfa
from aufer.readers.ferv39k import read_ferv39k
from aufer.readers.custom import read_au_csv, read_expr_csv
from aufer.readers.mafw import read_mafw
from aufer.readers import READERS, read_dataset
from aufer.readers.records import LayoutError


def _replace_line(path, lineno, text):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------ BP4D
def test_bp4d_reads_labels_frames_and_unknowns(tmp_path):
    fake = make_fake_bp4d(tmp_path)
    rec = read_bp4d(tmp_path)
    assert rec.dataset == "BP4D" and rec.aus == vocab.dataset_aus("BP4D")
    assert len(rec) == fake["n_rows"] == 24
    assert rec.sequences == ["F001/T1", "F001/T2", "M001/T1", "M001/T2"]
    assert rec.subjects == ["F001", "M001"]
    seq = rec.table[rec.table.sequence == "M001/T2"]
    assert seq.frame.tolist() == fake["frames"] == [1, 2, 3, 6, 7, 8]  # the gap is kept
    assert (seq.media_index == -1).all()
    assert seq.media.tolist() == [str(fake["images"]["M001/T2"][f]) for f in fake["frames"]]
    expected = np.concatenate([fake["occurrence"][s] for s in rec.sequences])
    np.testing.assert_array_equal(rec.occurrence, expected)
    assert rec.occurrence.dtype == np.int8 and (rec.occurrence == -1).sum() == 8  # the 9s
    assert rec.intensity is None


def test_bp4d_columns_selected_by_au_number_not_position(tmp_path):
    fake = make_fake_bp4d(tmp_path, subjects=("F001",), tasks=("T1",))
    path = fake["csv"]["F001/T1"]
    rows = [line.split(",") for line in path.read_text().splitlines()]
    order = [0] + list(range(len(rows[0]) - 1, 0, -1))  # frame column first, AU columns reversed
    path.write_text("\n".join(",".join(r[i] for i in order) for r in rows) + "\n")
    rec = read_bp4d(tmp_path)
    np.testing.assert_array_equal(rec.occurrence, fake["occurrence"]["F001/T1"])


def test_bp4d_frame_dir_unpadded_names_and_subject_subset(tmp_path):
    make_fake_bp4d(tmp_path, subjects=("F001", "M002"), frame_dir="Sequences", pad=0)
    rec = read_bp4d(tmp_path, subjects=["M002"])
    assert rec.subjects == ["M002"] and len(rec) == 12
    assert rec.table.media.iloc[3].endswith("Sequences/M002/T1/6.jpg")
    with pytest.raises(LayoutError, match="subject F999"):
        read_bp4d(tmp_path, subjects=["F999"])


def test_bp4d_missing_images_reported_per_sequence(tmp_path):
    fake = make_fake_bp4d(tmp_path)
    for f in (2, 7):
        fake["images"]["F001/T2"][f].unlink()
    with pytest.raises(LayoutError) as err:
        read_bp4d(tmp_path)
    msg = str(err.value)
    assert "F001/T2: 2 of 6 labelled frames have no image, first missing:" in msg
    assert str(tmp_path / "F001" / "T2" / "0002.jpg") in msg
    assert len(err.value.problems) == 1
    rec = read_bp4d(tmp_path, strict=False)
    assert len(rec) == 22 and any("F001/T2: 2 of 6" in n for n in rec.notes)


def test_bp4d_missing_sequence_folder_and_label_folder(tmp_path):
    make_fake_bp4d(tmp_path)
    shutil.rmtree(tmp_path / "M001" / "T1")
    with pytest.raises(LayoutError, match=r"M001/T1: frame folder .*M001/T1 missing"):
        read_bp4d(tmp_path)
    shutil.rmtree(tmp_path / "AUCoding")
    with pytest.raises(LayoutError, match="AU_OCC: label folder missing"):
        read_bp4d(tmp_path)


def test_bp4d_missing_au_column_and_malformed_line(tmp_path):
    fake = make_fake_bp4d(tmp_path)
    path = fake["csv"]["F001/T1"]
    header = path.read_text().splitlines()[0].split(",")
    _replace_line(path, 1, ",".join("x24" if h == "24" else h for h in header))
    bad = fake["csv"]["M001/T2"]
    cells = bad.read_text().splitlines()[2].split(",")
    cells[12] = "yes"  # column "12" (AU12)
    _replace_line(bad, 3, ",".join(cells))
    with pytest.raises(LayoutError) as err:
        read_bp4d(tmp_path)
    msg = str(err.value)
    assert f"{path} line 1: AU column(s) 24 missing" in msg
    assert f"{bad} line 3: non-integer value(s) AU12='yes'" in msg


# ----------------------------------------------------------------------------------------------- DISFA
def test_disfa_intensity_kept_and_occurrence_is_intensity_at_least_2(tmp_path):
    fake = make_fake_disfa(tmp_path)
    rec = read_disfa(tmp_path)
    assert rec.aus == vocab.dataset_aus("DISFA") and len(rec) == fake["n_rows"] == 24
    raw = np.concatenate([fake["intensity"][s] for s in fake["subjects"]])
    assert rec.intensity.dtype == np.float32
    np.testing.assert_array_equal(rec.intensity, raw)
    np.testing.assert_array_equal(rec.occurrence, (raw >= 2).astype(np.int8))
    assert set(np.unique(raw[:, 0])) == {0, 1, 2, 3, 4, 5}  # both sides of the threshold are exercised
    sn2 = rec.table[rec.table.subject == "SN002"]
    assert sn2.frame.tolist() == list(range(1, 13))
    assert sn2.media_index.tolist() == list(range(12))
    assert (sn2.media == str(fake["videos"]["SN002"])).all() and (sn2.sequence == "SN002").all()
    shutil.rmtree(tmp_path / "ActionUnit_Labels" / "SN002")
    rec = read_disfa(tmp_path)
    assert rec.subjects == ["SN001"] and "subjects with a video but no labels (ignored): SN002" in rec.notes


def test_disfa_missing_video_and_au_file(tmp_path):
    fake = make_fake_disfa(tmp_path)
    fake["videos"]["SN001"].unlink()
    fake["label_files"]["SN002"][9].unlink()
    with pytest.raises(LayoutError) as err:
        read_disfa(tmp_path)
    msg = str(err.value)
    assert f"SN001: video {fake['videos']['SN001']} missing" in msg
    assert f"{fake['label_files']['SN002'][9]}: file missing" in msg
    assert len(read_disfa(tmp_path, subjects=["SN001"], strict=False)) == 0


def test_disfa_malformed_line_and_out_of_scale_value(tmp_path):
    fake = make_fake_disfa(tmp_path)
    f1, f2 = fake["label_files"]["SN001"][12], fake["label_files"]["SN002"][25]
    _replace_line(f1, 5, "5;2")
    _replace_line(f2, 7, "7,6")
    with pytest.raises(LayoutError) as err:
        read_disfa(tmp_path)
    assert f"{f1} line 5:" in str(err.value) and f"{f2} line 7:" in str(err.value)
    assert len(err.value.problems) == 2


def test_disfa_frame_count_mismatches(tmp_path):
    fake = make_fake_disfa(tmp_path, subjects=("SN003",))
    au1 = fake["label_files"]["SN003"][1]
    au1.write_text(au1.read_text() + "13,0\n")
    with pytest.raises(LayoutError, match=r"SN003: AU files have different frame counts \(SN003_au1.txt 13"):
        read_disfa(tmp_path)
    for path in fake["label_files"]["SN003"].values():  # labels now run past the video's 12 frames
        if path != au1:
            path.write_text(path.read_text() + "13,0\n")
    with pytest.raises(LayoutError, match="has 12 frames but labels go up to frame 13"):
        read_disfa(tmp_path)
    assert len(read_disfa(tmp_path, check_videos=False)) == 13
    fake["videos"]["SN003"].write_bytes(b"not a video")
    with pytest.raises(LayoutError, match=r"LeftVideoSN003_comp.avi: cannot be opened as a video"):
        read_disfa(tmp_path)


# ------------------------------------------------------------------------------------------------ DFEW
def test_dfew_labels_minus_one_and_five_folds(tmp_path):
    fake = make_fake_dfew(tmp_path, frames=("clip_224x224_16f", "jpg_256"), n_frames=2)
    rec = read_dfew(tmp_path)
    assert rec.classes == vocab.emotions(7) and len(rec) == 14
    assert dict(zip(rec.table["clip"], rec.labels)) == fake["labels"]
    assert rec.table["clip"].iloc[1] == "00003" and rec.labels[1] == 1  # csv label 2 -> sadness
    assert sorted(rec.folds) == ["1", "2", "3", "4", "5"]
    for k, parts in fake["folds"].items():
        assert rec.folds[k] == {p: sorted(c) for p, c in parts.items()}
        assert set(rec.folds[k]["train"]) | set(rec.folds[k]["test"]) == set(rec.table["clip"])
    assert (rec.table.subject == rec.table["clip"]).all()
    assert rec.table.media.iloc[0] == str(tmp_path / "Clip" / "clip_224x224_16f" / "00001")
    assert read_dfew(tmp_path, frames="jpg_256").table.media.iloc[0] == str(tmp_path / "Clip" / "jpg_256" / "00001")


def test_dfew_missing_csv_bad_label_and_disagreement(tmp_path):
    fake = make_fake_dfew(tmp_path, n_frames=1)
    fake["csv"][("3", "test")].unlink()
    bad = fake["csv"][("1", "train")]
    first = bad.read_text().splitlines()[1].split(",")[0]
    _replace_line(bad, 2, f"{first},8")
    other = fake["csv"][("2", "train")]
    lines = other.read_text().splitlines()
    clip, label = lines[3].split(",")
    _replace_line(other, 4, f"{clip},{int(label) % 7 + 1}")
    with pytest.raises(LayoutError) as err:
        read_dfew(tmp_path)
    msg = str(err.value)
    assert f"{fake['csv'][('3', 'test')]}: file missing" in msg
    assert f"{bad} line 2: label 8 outside 1-7" in msg
    assert f"{other} line 4: clip {int(clip):05d} has label" in msg


def test_dfew_missing_and_empty_frame_folders(tmp_path):
    fake = make_fake_dfew(tmp_path, n_frames=1)
    shutil.rmtree(fake["folders"][("clip_224x224_16f", "00005")])
    for p in fake["folders"][("clip_224x224_16f", "00007")].iterdir():
        p.unlink()
    with pytest.raises(LayoutError) as err:
        read_dfew(tmp_path)
    msg = str(err.value)
    assert "clip_224x224_16f/00005 missing" in msg and "clip_224x224_16f/00007 holds no image" in msg
    rec = read_dfew(tmp_path, strict=False)
    assert len(rec) == 12 and "00005" not in sum(rec.folds["3"].values(), [])
    with pytest.raises(LayoutError, match="jpg_256: frame set folder missing"):
        read_dfew(tmp_path, frames="jpg_256")


# --------------------------------------------------------------------------------------------- FERV39K
def test_ferv39k_single_split_and_label_names(tmp_path):
    fake = make_fake_ferv39k(tmp_path)
    rec = read_ferv39k(tmp_path)
    assert rec.classes == vocab.emotions(7) and len(rec) == 11
    assert list(rec.folds) == ["1"]
    assert rec.folds["1"]["train"] == sorted(fake["train"]) and rec.folds["1"]["test"] == sorted(fake["test"])
    assert dict(zip(rec.table["clip"], rec.labels)) == fake["labels"]
    row = rec.table.set_index("clip").loc["Crime/Argue/0003"]  # written as "Crime/Argue/0003 Neutral"
    assert rec.classes[row.label] == "neutral" and row.media == str(tmp_path / "2_ClipsforFaceCrop/Crime/Argue/0003")


def test_ferv39k_damage(tmp_path):
    fake = make_fake_ferv39k(tmp_path)
    original = {part: path.read_text() for part, path in fake["csv"].items()}
    _replace_line(fake["csv"]["train"], 2, "Daily/Eating/0002 Joyful")
    _replace_line(fake["csv"]["test"], 1, "Action/Busy/0001")
    shutil.rmtree(fake["folders"]["Daily/Eating/0005"])
    with pytest.raises(LayoutError) as err:
        read_ferv39k(tmp_path)
    msg = str(err.value)
    assert f"{fake['csv']['train']} line 2: unknown label 'Joyful'" in msg
    assert f"{fake['csv']['test']} line 1: expected '<clip path> <Label>'" in msg
    assert "Daily/Eating/0005" not in msg  # media is checked only once the split files are sound
    for part, text in original.items():
        fake["csv"][part].write_text(text)
    with pytest.raises(LayoutError, match=r"clip Daily/Eating/0005 \(listed at .*train_All.csv line 5\): frame folder"):
        read_ferv39k(tmp_path)
    fake["csv"]["test"].unlink()
    with pytest.raises(LayoutError, match="test_All.csv: file missing"):
        read_ferv39k(tmp_path)


# ------------------------------------------------------------------------------------------------ MAFW
def test_mafw_eleven_classes_folds_and_media(tmp_path):
    fake = make_fake_mafw(tmp_path)
    rec = read_mafw(tmp_path)
    assert rec.classes == vocab.emotions(11) and len(rec.classes) == 11 and len(rec) == 12
    assert dict(zip(rec.table["clip"], rec.labels)) == fake["labels"]
    assert set(rec.labels) == set(range(11))
    assert sorted(rec.folds) == ["1", "2", "3", "4", "5"]
    assert rec.folds["2"]["test"] == sorted(fake["folds"]["2"]["test"])
    media = dict(zip(rec.table["clip"], rec.table.media))
    assert media["00001"] == str(tmp_path / "data" / "frames" / "00001")
    assert media["00006"] == str(tmp_path / "data" / "clips" / "00006.mp4")


def test_mafw_alternative_split_folder_and_damage(tmp_path):
    fake = make_fake_mafw(tmp_path, n_clips=6, media="clips", n_frames=2, split_dir="split")
    assert len(read_mafw(tmp_path)) == 6
    path = fake["split_files"][("4", "train")]
    _replace_line(path, 1, "00001.mp4 boredom")
    fake["media"]["00011"].unlink()
    with pytest.raises(LayoutError) as err:
        read_mafw(tmp_path)
    assert f"{path} line 1: unknown label 'boredom'" in str(err.value)
    assert "clip 00011" not in str(err.value)  # media is checked only once the split files are sound
    _replace_line(path, 1, "00001.mp4 happiness")
    with pytest.raises(LayoutError, match=r"clip 00011 .*nor video .*data/clips/00011.mp4"):
        read_mafw(tmp_path)
    shutil.rmtree(tmp_path / "split")
    with pytest.raises(LayoutError, match="no split folder"):
        read_mafw(tmp_path)


# ---------------------------------------------------------------------------------- train/test overlap
def test_clip_in_train_and_test_of_a_fold_is_reported(tmp_path):
    fake = make_fake_dfew(tmp_path / "dfew", n_frames=1)
    train, test = fake["csv"][("2", "train")], fake["csv"][("2", "test")]
    train.write_text(train.read_text() + test.read_text().splitlines()[1] + "\n")
    with pytest.raises(LayoutError, match=r"EmoLabel_DataSplit fold 2: 1 clip\(s\) in both train and test, e\.g\. "):
        read_dfew(tmp_path / "dfew")
    fake = make_fake_ferv39k(tmp_path / "ferv", n_frames=1)
    fake["csv"]["test"].write_text(fake["csv"]["test"].read_text() + fake["csv"]["train"].read_text())
    with pytest.raises(LayoutError, match=r"All_scenes \(train_All.csv, test_All.csv\): 7 clip\(s\) in both"):
        read_ferv39k(tmp_path / "ferv")
    fake = make_fake_mafw(tmp_path / "mafw", n_clips=6, n_frames=1)
    path = fake["split_files"][("3", "test")]
    path.write_text(path.read_text() + fake["split_files"][("3", "train")].read_text().splitlines()[0] + "\n")
    with pytest.raises(LayoutError, match=r"set_3 \(train.txt, test.txt\): 1 clip\(s\) in both train and test"):
        read_mafw(tmp_path / "mafw")


# --------------------------------------------------------------------------------------------- generic
def test_au_csv_images_video_unknowns_and_intensity(tmp_path):
    fake = make_fake_au_csv(tmp_path)
    rec = read_au_csv(fake["csv"])
    assert rec.aus == (1, 2, 12) and len(rec) == fake["n_rows"] == 14
    exp = fake["rows"]
    for col in ("sequence", "frame", "media", "media_index", "subject"):
        assert rec.table[col].tolist() == [r[col] for r in exp], col
    np.testing.assert_array_equal(rec.occurrence, [r["occurrence"] for r in exp])
    assert (rec.occurrence[:, 0] == -1).sum() == 2  # written as "", "-1" or "9"
    np.testing.assert_array_equal(rec.intensity[:, 2], [r["intensity"] for r in exp])
    assert np.isnan(rec.intensity[:, :2]).all()
    video = rec.table[rec.table.sequence == "media/talk.mp4"]
    assert video.frame.tolist() == [0, 1, 2, 5, 6, 7] == video.media_index.tolist()


def test_au_csv_damage(tmp_path):
    fake = make_fake_au_csv(tmp_path)
    path = fake["csv"]
    _replace_line(path, 2, "media/P01/nothere.jpg,,P01,1,0,1,")
    _replace_line(path, 4, "media/P01/img_02.jpg,,P01,2,0,1,")
    _replace_line(path, 10, "media/talk.mp4,,talk,1,0,1,")
    with pytest.raises(LayoutError) as err:
        read_au_csv(path)
    msg = str(err.value)
    assert f"{path} line 2: media file missing: {tmp_path / 'media/P01/nothere.jpg'}" in msg
    assert f"{path} line 4: bad AU value(s) AU1='2'" in msg
    assert f"{path} line 10: media {tmp_path / 'media/talk.mp4'} is a video; give its 0-based frame" in msg
    path.write_text("file,AU12\nmedia/P01/img_00.jpg,1\n")
    with pytest.raises(LayoutError, match="line 1: required column 'media' missing"):
        read_au_csv(path)


def test_expr_csv_names_indices_folds_and_videos(tmp_path):
    fake = make_fake_expr_csv(tmp_path / "a")
    rec = read_expr_csv(fake["csv"])
    assert rec.classes == vocab.emotions(7) and len(rec) == 6
    assert dict(zip(rec.table["clip"], rec.labels)) == fake["labels"]  # "happy", "Sadness", "angry" normalised
    assert dict(zip(rec.table["clip"], rec.table.subject)) == fake["subjects"]
    assert rec.folds == {k: {p: sorted(c) for p, c in v.items()} for k, v in fake["folds"].items()}
    fake = make_fake_expr_csv(tmp_path / "b", media="videos", labels="indices", n_folds=1, n_clips=3)
    rec = read_expr_csv(fake["csv"])
    assert rec.table["clip"].tolist() == ["clips/c00", "clips/c01", "clips/c02"]
    assert rec.table.media.iloc[0].endswith("clips/c00.mp4") and rec.labels.tolist() == [0, 1, 2]
    eleven = tmp_path / "b" / "eleven.csv"
    eleven.write_text("media,label\nclips/c00.mp4,contempt\nclips/c01.mp4,happiness\n")
    assert read_expr_csv(eleven).classes == vocab.emotions(11)


def test_expr_csv_damage(tmp_path):
    fake = make_fake_expr_csv(tmp_path, n_folds=1)
    path = fake["csv"]
    _replace_line(path, 3, "clips/c01,bored,s1,1,train")
    _replace_line(path, 4, "clips/gone,neutral,s2,1,test")
    with pytest.raises(LayoutError) as err:
        read_expr_csv(path, classes=vocab.emotions(7))
    msg = str(err.value)
    assert f"{path} line 3: unknown label 'bored'" in msg
    assert f"{path} line 4: media missing: {tmp_path / 'clips/gone'}" in msg
    path.write_text("media,emotion\nclips/c00,happy\n")
    with pytest.raises(LayoutError, match="required column 'label' missing"):
        read_expr_csv(path)


# --------------------------------------------------------------------------------------------- registry
def test_read_dataset_by_name(tmp_path):
    make_fake_ferv39k(tmp_path, n_train=2, n_test=1, n_frames=1)
    assert len(read_dataset("ferV39k", tmp_path)) == 3
    assert set(READERS) == {"BP4D", "DISFA", "DFEW", "FERV39K", "MAFW", "au_csv", "expr_csv"}
    with pytest.raises(ValueError, match="unknown dataset 'CK\\+'; known: BP4D, DISFA, DFEW"):
        read_dataset("CK+", tmp_path)
    fake = make_fake_au_csv(tmp_path / "au")
    moved = fake["csv"].rename(tmp_path / "elsewhere.csv")  # media paths stay relative to the fake's root
    rec = read_dataset("AU_CSV", moved, root=tmp_path / "au")
    assert len(rec) == fake["n_rows"] and rec.table.media.iloc[0] == fake["rows"][0]["media"]
