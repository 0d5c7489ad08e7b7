"""Face store, ``prepare`` (incl. resumption after kill -9) and the store-backed loaders, on fake layouts."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from fakes import face_frame, make_fake_bp4d, make_fake_dfew, make_fake_disfa, write_image

from aufer.readers.disfa import read_disfa
from aufer.readers.dfew import read_dfew
from aufer.readers.bp4d import read_bp4d
from aufer.datasets.loaders import (AUWindowDataset, ExprClipDataset, JointLoader, store_loader, transform_clip,
                                    union_aus)
from aufer.store.prepare import prepare
from aufer.readers.records import FrameRecords
from aufer.store.facestore import FaceStore, StoreError


@pytest.fixture(scope="module")
def bp4d(tmp_path_factory):
    root = tmp_path_factory.mktemp("bp4d")
    fake = make_fake_bp4d(root, subjects=("F001", "M001"), tasks=("T1",), n_frames=10)
    rec = read_bp4d(root)
    store = root / "bp4d.sqlite"
    report = prepare(rec, store, crop_size=64, workers=1, progress=False)
    return fake, rec, FaceStore(store), report


@pytest.fixture(scope="module")
def disfa(tmp_path_factory):
    root = tmp_path_factory.mktemp("disfa")
    make_fake_disfa(root, subjects=("SN001",), n_frames=12)
    rec = read_disfa(root)
    prepare(rec, root / "disfa.sqlite", crop_size=64, workers=1, progress=False)
    return rec, FaceStore(root / "disfa.sqlite")


@pytest.fixture(scope="module")
def dfew(tmp_path_factory):
    root = tmp_path_factory.mktemp("dfew")
    make_fake_dfew(root, n_clips=5, n_frames=4, size=(160, 160))
    rec = read_dfew(root)
    prepare(rec, root / "dfew.sqlite", crop_size=64, workers=1, progress=False)
    return rec, FaceStore(root / "dfew.sqlite")


def test_prepare_stores_every_labelled_frame_with_flags(bp4d):
    fake, rec, store, report = bp4d
    seqs = store.sequences()
    assert seqs["done"].all() and set(seqs["key"]) == set(rec.table["sequence"])
    ft = store.frame_table()
    assert len(ft) == len(rec) == report["frames_done"]
    assert ft["detected"].mean() > 0.9  # real faces on a plain canvas
    d = store.read("F001/T1", rec.table.query("sequence == 'F001/T1'")["frame"][:4])
    assert d["crops"].shape == (4, 64, 64, 3) and d["landmarks"].shape == (4, 478, 3)
    # the aligned eye centres sit where the template puts them, frame after frame
    from aufer.faces.align import template

    eyes = d["landmarks"][:, [468, 473], :2]
    assert np.abs(eyes.mean(0) - template(64)[:2]).max() < 4


def test_store_keeps_records(bp4d):
    _, rec, store, _ = bp4d
    back = store.load_records()
    assert isinstance(back, FrameRecords) and back.aus == rec.aus
    assert np.array_equal(back.occurrence, rec.occurrence)
    assert back.table["frame"].tolist() == rec.table["frame"].tolist()


def test_prepare_records_frames_without_a_face(tmp_path):
    blank = np.full((240, 320, 3), 90, np.uint8)
    paths = [write_image(tmp_path / f"{i}.jpg", face_frame(0) if i != 2 else blank) for i in range(4)]
    import pandas as pd

    t = pd.DataFrame({"subject": "p", "sequence": "p", "frame": range(4), "media": [str(p) for p in paths],
                      "media_index": -1})
    rec = FrameRecords("toy", str(tmp_path), (12,), t, np.zeros((4, 1), np.int8))
    prepare(rec, tmp_path / "s.sqlite", crop_size=48, workers=1, progress=False)
    ft = FaceStore(tmp_path / "s.sqlite").frame_table()
    assert ft["frame"].tolist() == [0, 1, 2, 3]  # recorded, not dropped
    assert ft["detected"].tolist() == [True, True, False, True]


def test_store_errors_are_clear(tmp_path, bp4d):
    with pytest.raises(StoreError, match="no such store"):
        FaceStore(tmp_path / "missing.sqlite")
    with pytest.raises(StoreError, match="64-pixel"):
        FaceStore(bp4d[2].path, "a", crop_size=128)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not an aufer face store"):
        FaceStore(tmp_path / "junk.sqlite")
    with pytest.raises(KeyError, match="prepare"):
        bp4d[2].read("F999/T1", [1])


def test_au_windows_from_store_cover_each_frame_once(bp4d):
    _, rec, store, _ = bp4d
    ds = AUWindowDataset(store, rec, length=4, train=False)
    seen = []
    for i in range(len(ds)):
        item = ds[i]
        rows = item["rows"].numpy()[item["valid"].numpy()]
        frames = rec.table["frame"].to_numpy()[rows]
        assert (np.diff(frames) == 1).all()  # never across a gap
        assert len(set(rec.table["sequence"].to_numpy()[rows])) == 1
        assert np.array_equal(item["au"].numpy()[item["valid"].numpy()], rec.occurrence[rows])
        assert (item["au"].numpy()[~item["valid"].numpy()] == -1).all()  # padding never counts
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(len(rec)))


def test_training_windows_change_with_epoch_and_stay_in_runs(bp4d):
    _, rec, store, _ = bp4d
    ds = AUWindowDataset(store, rec, length=3, train=True, seed=1)
    first = ds.index.copy()
    ds.set_epoch(1)
    assert not np.array_equal(first, ds.index)
    frames = rec.table["frame"].to_numpy()
    for rows, valid in zip(ds.index, ds.valid):
        assert (np.diff(frames[rows[valid]]) == 1).all()


def test_transform_clip_is_consistent_within_a_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    crops = np.repeat(frame[None], 5, 0)
    lms = np.repeat(rng.uniform(10, 50, (1, 478, 3)).astype(np.float32), 5, 0)
    a, la = transform_clip(crops, lms, 56, np.random.default_rng(1))
    assert a.shape == (5, 56, 56, 3)
    assert all(np.array_equal(a[0], a[t]) for t in range(5)) and np.allclose(la[0], la[4])
    b, _ = transform_clip(crops, lms, 56, np.random.default_rng(2))
    assert not np.array_equal(a[0], b[0])  # another clip, another draw
    c, lc = transform_clip(crops, lms, 56, None)  # evaluation: resize only
    assert np.allclose(lc[..., :2], lms[..., :2] * 56 / 64 + (0.5 * 56 / 64 - 0.5), atol=1e-4)


def test_expression_clips_tsn_from_store(dfew):
    rec, store = dfew
    ds = ExprClipDataset(store, rec, num_segments=16, train=False, aus=(1, 2))
    item = ds[0]
    assert item["crops"].shape == (16, 64, 64, 3) and item["au"].shape == (16, 2)
    assert (item["au"] == -1).all() and int(item["expr"]) == rec.labels[0]
    tr = ExprClipDataset(store, rec, num_segments=4, train=True, seed=0)
    assert tr[1]["crops"].shape == (4, 64, 64, 3)


def test_mixed_vocabulary_and_joint_loader_masks(bp4d, disfa, dfew):
    _, brec, bstore, _ = bp4d
    drec, dstore = disfa
    aus = union_aus(brec.aus, drec.aus)
    assert len(aus) == 15 and aus == tuple(sorted(aus))
    b = AUWindowDataset(bstore, brec, length=4, train=True, aus=aus)
    d = AUWindowDataset(dstore, drec, length=4, train=True, aus=aus)
    only_disfa = [aus.index(a) for a in set(drec.aus) - set(brec.aus)]
    only_bp4d = [aus.index(a) for a in set(brec.aus) - set(drec.aus)]
    assert (b[0]["au"][:, only_disfa] == -1).all() and (d[0]["au"][:, only_bp4d] == -1).all()
    assert (d[0]["au"][:, aus.index(12)] >= 0).all()
    au_loader = store_loader(torch.utils.data.ConcatDataset([b, d]), batch_size=2)
    erec, estore = dfew
    fe_loader = store_loader(ExprClipDataset(estore, erec, num_segments=4, train=True, aus=aus), batch_size=2)
    joint = JointLoader(au_loader, fe_loader)
    steps = list(joint)
    assert len(steps) == len(joint) == max(len(au_loader), len(fe_loader))
    for au_b, fe_b in steps:
        assert (au_b["expr"] == -1).all() and (fe_b["au"] == -1).all()
        assert au_b["au"].shape[-1] == fe_b["au"].shape[-1] == 15
    joint.set_epoch(3)
    assert b.epoch == d.epoch == 3


@pytest.mark.slow
def test_prepare_resumes_after_kill_9(tmp_path):
    make_fake_disfa(tmp_path, subjects=("SN001", "SN002", "SN003"), n_frames=60)
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "aufer.cli", "prepare", "DISFA", "--root", str(tmp_path), "--out", str(store),
           "--size", "48", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stored_before = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if store.exists():
            try:
                con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
                stored_before = con.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if stored_before >= 32:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < stored_before < 180, "the run should have been killed mid-way"
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = con.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    con.close()
    assert kept >= stored_before  # committed frames survive the kill
    report = prepare(read_disfa(tmp_path), store, crop_size=48, workers=1, progress=False)
    assert report["frames_done"] == 180 - kept  # only what was left
    s = FaceStore(store)
    assert len(s.frame_table()) == 180 and s.sequences()["done"].all()


@pytest.mark.slow
def test_prepare_mixed_frame_folders_and_videos_in_parallel(tmp_path):
    from fakes import make_fake_mafw

    from aufer.readers.mafw import read_mafw
    from aufer.protocols import expression_split

    make_fake_mafw(tmp_path, n_clips=6, media="mixed", n_frames=5, size=(160, 120))
    rec = read_mafw(tmp_path)
    report = prepare(rec, tmp_path / "m.sqlite", crop_size=48, workers=2, progress=False)
    store = FaceStore(tmp_path / "m.sqlite")
    seqs = store.sequences().set_index("key")
    assert report["sequences_done"] == len(rec) == len(seqs)
    assert (seqs.loc[list(rec.table["clip"]), "stored"] == 5).all()  # every frame, from folders and from videos
    split = expression_split(store.load_records(), fold=1, val_fraction=0.2)
    ds = ExprClipDataset(store, rec.subset(split.test), num_segments=8)
    assert ds[0]["crops"].shape == (8, 48, 48, 3)


def test_cli_prepare_reports_layout_problems(tmp_path):
    from typer.testing import CliRunner

    from aufer.cli import app

    (tmp_path / "EmoLabel_DataSplit").mkdir()
    res = CliRunner().invoke(app, ["prepare", "DFEW", "--root", str(tmp_path), "--out", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 2
    assert "DFEW layout problem" in res.output and "set_1.csv" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["prepare", "NOPE", "--root", str(tmp_path), "--out", str(tmp_path / "s.sqlite")])
    assert res.exit_code == 2 and "known: BP4D" in res.output


def test_records_keep_extra_columns(tmp_path):
    """Extra record columns (e.g. ``source``: real / synthetic) survive the store, for both kinds of records."""
    import numpy as np

    from aufer import vocab
    from aufer.synth import ClipSet

    n, t, s = 3, 2, 16
    cs = ClipSet(np.zeros((n, t, s, s, 3), np.uint8), np.zeros((n, t, 478, 3), np.float32),
                 np.zeros((n, t, 2), np.int8), np.zeros((n, t, 2), np.float32), np.array([0, 1, 2]),
                 np.array(["p0", "p1", "p2"]), np.array(["real", "synthetic", "real"]), np.ones((n, t), bool),
                 (1, 12), vocab.EMOTIONS_7)
    for kind in ("au", "expr"):
        store = FaceStore(tmp_path / f"{kind}.sqlite", "a", crop_size=s)
        store.save_records(cs.to_store(store, kind, kind))
        back = store.load_records()
        assert "source" in back.table and set(back.table["source"]) == {"real", "synthetic"}
