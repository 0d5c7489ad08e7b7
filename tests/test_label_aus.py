"""`aufer label-aus`: AU pseudo-labels of expression clips from an aufer AU model or OpenFace 2.x CSVs, written into
the expression store (aufer.store.au_labels), read back by ExprClipDataset (frame occurrences, both clip rules of
the AU-DFER code), and reaching the AU-DFER loss. Stores are built without MediaPipe (tests/engine_data.py)."""

import copy
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from aufer.methods.au_dfer import clip_labels_count, clip_labels_mean
from aufer.cli import app
from aufer.datasets.batch import collate
from aufer.datasets.clips import ExprClipDataset
from aufer.datasets.sampling import tsn_indices
from aufer.models import create_model
from aufer.models.contract import probabilities
from aufer.models import save_model
from aufer.store import FaceStore, StoredFrame
from aufer.predict import label_aus
from aufer.store import au_labels as al
from aufer.predict.label_aus import clip_windows, label_store_with_model
from aufer.store.au_labels import AULabelError, label_store_from_openface, pseudo_label_info, read_au_pseudo

from engine_data import au_store, expr_store, tiny_recipe

MODEL_AUS = (1, 2, 4, 12)


def _model(seed=0, aus=MODEL_AUS):
    torch.manual_seed(seed)
    return create_model("aufer_tiny", aus=aus, input_size=32, width=4, dim=16, geometry_dim=8).eval()


@pytest.fixture
def store(tmp_path):
    return expr_store(tmp_path / "dfew.sqlite", n_clips=6, frames=5)


def _records(path):
    with FaceStore(path) as s:
        return s.load_records()


def _clips(path):
    return list(_records(path).table["clip"])


def _write(path, probs: dict, aus):
    """Hand-made labels through the module's own writer (a test source)."""
    st, _ = al.open_expr_store(path)
    info = al.begin_labelling(st, {"kind": "test"}, {"source": "test", "name": "hand", "path": None, "aus": list(aus),
                                            "values": "probability"}, replace=True)
    al.put_labels(st, [(st.sequence_id(c), st.stored_frames(c), np.asarray(v, np.float32)) for c, v in probs.items()])
    al.finish_labelling(st, info)
    st.close()


def _dataset(path, mode, aus=(1, 6, 12), T=3):
    st = FaceStore(path)
    return ExprClipDataset(st, st.load_records(), num_segments=T, aus=aus, au_labels=mode)


# --------------------------------------------------------------------------------------------- windows
def test_clip_windows_follow_the_predict_window_rule():
    """Each frame is predicted once, by the same window as aufer.predict.windows.WindowScheduler would use."""
    from types import SimpleNamespace

    from aufer.predict.windows import WindowScheduler

    for window, stride in ((1, 1), (4, 4), (4, 1), (4, 3), (16, 16), (16, 5)):
        for n in range(1, 40):
            got = {}

            def run(crops, lms):
                c = crops[..., 0, 0, 0].float()  # frame number per window position (padding repeats the last)
                return torch.stack([c, c[:, :1].expand_as(c)], -1), torch.zeros(len(c), 0)

            sched = WindowScheduler(run, lambda row, pa, pe: got.__setitem__(row, (int(pa[0]), int(pa[1]))),
                                    window, stride)
            for f in range(n):
                a = SimpleNamespace(face_id=0, crop=np.full((2, 2, 3), f, np.uint8), landmarks=np.zeros((478, 3)))
                sched.add_frame(f, [(f, a)])
            sched.finish()
            want = {f: (f, start) for start, stop, first in clip_windows(n, window, stride)
                    for f in range(first, stop)}
            assert got == want, (window, stride, n)


# ---------------------------------------------------------------------------------------------- a model
def test_model_labels_every_frame_as_direct_inference(store):
    m = _model()
    rep = label_store_with_model(store, m, batch_size=4, device="cpu")  # batches cross clip boundaries
    clips = _clips(store)
    assert rep["complete"] and rep["clips_labelled"] == 6 and rep["frames_labelled"] == 30
    assert not rep["clips_without_labels"]
    info = pseudo_label_info(store)
    assert info["source"] == "model" and info["aus"] == list(MODEL_AUS) and info["complete"]
    assert info["identity"]["weights_sha256"] == label_aus._state_hash(m) and info["started"] and info["finished"]
    got = read_au_pseudo(store, clips)
    with FaceStore(store) as st:
        for c in clips:
            d = st.read(c, range(5))
            p, _ = probabilities(m, torch.from_numpy(d["crops"])[:, None], torch.from_numpy(d["landmarks"])[:, None])
            assert got[c].shape == (5, 4) and not np.isnan(got[c]).any()
            np.testing.assert_allclose(got[c], p[:, 0].numpy(), atol=1e-5)
    # a clip model (T = 3: windows; T = 8: the 5-frame clips padded to T) labels every frame as well
    # (the tiny model's AU outputs are per frame, so the windows must not change them)
    for window in (3, 8):
        mt = copy.deepcopy(m)
        mt.default_cfg["window"] = window
        rep = label_store_with_model(store, mt, batch_size=7, device="cpu", replace=True)
        assert rep["clips_labelled"] == 6 and pseudo_label_info(store)["identity"]["window"] == window
        again = read_au_pseudo(store, clips)
        for c in clips:
            np.testing.assert_allclose(again[c], got[c], atol=1e-5)


def test_frames_without_a_face_are_not_labelled(store):
    clip = _clips(store)[0]
    with FaceStore(store, "a") as st:  # the store found no face in frame 1 of the first clip
        d = st.read(clip, [1])
        st.write(clip, [StoredFrame(1, d["crops"][0], d["landmarks"][0], np.full(4, np.nan), 0.0, False)])
    label_store_with_model(store, _model(), batch_size=64, device="cpu")
    p = read_au_pseudo(store, [clip])[clip]
    assert np.isnan(p[1]).all() and not np.isnan(np.delete(p, 1, 0)).any()
    ds = _dataset(store, "frames", aus=MODEL_AUS, T=5)
    assert (ds[0]["au"][1] == -1).all() and (ds[0]["au"][[0, 2, 3, 4]] >= 0).all()


def test_dataset_labels_mask_aus_the_model_lacks(store):
    label_store_with_model(store, _model(), device="cpu")
    clips = _clips(store)
    probs = read_au_pseudo(store, clips)
    ds = _dataset(store, "frames")  # AU6 is not an output of the labelling model
    idx = tsn_indices(5, 3, train=False)
    for i, c in enumerate(clips):
        au = ds[i]["au"].numpy()
        assert au.shape == (3, 3) and (au[:, 1] == -1).all()
        np.testing.assert_array_equal(au[:, [0, 2]], (probs[c][idx][:, [0, 3]] >= 0.5).astype(int))
    # the default keeps today's items exactly: all −1
    st = FaceStore(store)
    plain = ExprClipDataset(st, st.load_records(), num_segments=3, aus=(1, 6, 12))
    assert (plain[0]["au"] == -1).all() and plain[0]["au"].shape == (3, 3)
    assert all(torch.equal(plain[0][k], ds[0][k]) for k in plain[0] if k != "au")


def test_both_clip_rules_on_read_back_labels(store):
    clips = _clips(store)
    nan = np.nan
    #            AU1   AU2   AU4   AU12
    hand = np.array([[0.75, 0.95, nan, 0.3],   # (AU1 in exact binary fractions: the mean is exactly 0.5)
                     [0.75, 0.40, nan, 0.6],
                     [0.25, 0.40, nan, 0.6],
                     [0.25, 0.40, nan, 0.6],
                     [nan, 0.40, nan, 0.2]])
    _write(store, {clips[0]: hand}, MODEL_AUS)  # one clip labelled, the others have no row
    back = read_au_pseudo(store, clips[:2])
    np.testing.assert_array_equal(np.isnan(back[clips[0]]), np.isnan(hand))
    assert np.isnan(back[clips[1]]).all()
    aus = (1, 2, 4, 6, 12)
    # mean rule on the values: AU1 mean 0.5 (known frames) → 1; AU2 0.51 → 1; AU12 0.46 → 0; AU4 unknown;
    # AU6 absent
    mean = _dataset(store, "clip_mean", aus, T=4)[0]["au"].numpy()
    # count rule on the occurrences (≥ 0.5): AU1 2 of 4 → 1; AU2 1 of 5 → 0; AU12 3 of 5 → 1
    count = _dataset(store, "clip_count", aus, T=4)[0]["au"].numpy()
    assert mean.shape == count.shape == (4, 5)
    np.testing.assert_array_equal(mean, np.tile([1, 1, -1, -1, 0], (4, 1)))
    np.testing.assert_array_equal(count, np.tile([1, 0, -1, -1, 1], (4, 1)))
    np.testing.assert_array_equal(mean[0, [0, 1, 2, 4]], clip_labels_mean(back[clips[0]]))
    occ = np.where(np.isnan(hand), nan, hand >= 0.5)
    np.testing.assert_array_equal(count[0, [0, 1, 2, 4]], clip_labels_count(occ))
    frames = _dataset(store, "frames", aus, T=5)[0]["au"].numpy()
    np.testing.assert_array_equal(frames[:, 0], [1, 1, 0, 0, -1])
    for mode in ("frames", "clip_mean", "clip_count"):  # a clip without labels: all −1
        assert (_dataset(store, mode, aus)[1]["au"] == -1).all()


def test_resume_after_an_interruption(store, tmp_path):
    fresh = tmp_path / "fresh.sqlite"
    shutil.copy(store, fresh)
    m = _model()

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # killed after the first committed batch (one clip)
        label_store_with_model(store, m, batch_size=5, device="cpu", progress=stop)
    info = pseudo_label_info(store)
    assert not info["complete"]
    assert sum(not np.isnan(v).all() for v in read_au_pseudo(store, _clips(store)).values()) == 1
    with pytest.raises(AULabelError, match="interrupted"):
        _dataset(store, "frames")
    rep = label_store_with_model(store, m, batch_size=5, device="cpu")
    assert rep["clips_resumed"] == 1 and rep["clips_labelled"] == 5 and rep["complete"]
    assert pseudo_label_info(store)["started"] == info["started"]
    label_store_with_model(fresh, m, batch_size=64, device="cpu")
    a, b = read_au_pseudo(store, _clips(store)), read_au_pseudo(fresh, _clips(store))
    for c in a:
        np.testing.assert_allclose(a[c], b[c], atol=1e-6)
    again = label_store_with_model(store, m, device="cpu")  # nothing left to do
    assert again["clips_labelled"] == 0 and again["clips_resumed"] == 6
    clip = _clips(store)[0]
    with FaceStore(store, "a") as st:  # `aufer prepare` stored one more frame of a clip since
        d = st.read(clip, [4])
        st.write(clip, [StoredFrame(5, d["crops"][0], d["landmarks"][0], np.zeros(4), 1.0, True)])
    p = read_au_pseudo(store, [clip])[clip]
    assert p.shape == (6, 4) and np.isnan(p[5]).all() and not np.isnan(p[:5]).any()
    again = label_store_with_model(store, m, device="cpu")  # that clip is labelled again, whole
    assert again["clips_labelled"] == 1 and not np.isnan(read_au_pseudo(store, [clip])[clip]).any()


def test_another_source_is_refused_unless_replace(store, tmp_path):
    label_store_with_model(store, _model(0), device="cpu")
    before = read_au_pseudo(store, _clips(store))
    with pytest.raises(AULabelError, match="--replace"):
        label_store_with_model(store, _model(1), device="cpu")
    of = tmp_path / "of"
    _openface_csv(of / "clip_00000.csv", [[1, 0]] * 5, aus=(1, 12))
    with pytest.raises(AULabelError, match="--replace"):
        label_store_from_openface(store, of)
    assert pseudo_label_info(store)["identity"]["weights_sha256"] == label_aus._state_hash(_model(0))
    rep = label_store_with_model(store, _model(1), device="cpu", replace=True)
    assert rep["clips_labelled"] == 6 and rep["clips_resumed"] == 0
    after = read_au_pseudo(store, _clips(store))
    assert not np.allclose(after[_clips(store)[0]], before[_clips(store)[0]])
    rep = label_store_from_openface(store, of, replace=True)
    assert pseudo_label_info(store)["source"] == "openface" and rep["clips_labelled"] == 1
    assert np.isnan(read_au_pseudo(store, _clips(store)[1:2])[_clips(store)[1]]).all()  # no stale model rows


# --------------------------------------------------------------------------------------------- OpenFace
def _openface_csv(path, presence, aus=(1, 2, 12, 28, 45), success=None, second_face=0):
    """An OpenFace 2.x-style CSV (the header layout of tests/fixtures/openface_2x_sample.csv, trimmed to the
    columns aufer reads): one row per frame (1-based) of face 0, and of a face 1 (all AUs present) in the first
    ``second_face`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ["frame", "face_id", "timestamp", "confidence", "success"] + [f"AU{a:02d}_r" for a in aus] + \
        [f"AU{a:02d}_c" for a in aus]
    lines = [", ".join(head)]
    for t, row in enumerate(presence):
        for face in (0, 1) if t < second_face else (0,):
            ok = 1 if success is None or face else success[t]
            row = [1] * len(aus) if face else row
            vals = [1.5 * v for v in row] + list(row)
            lines.append(", ".join(map(str, [t + 1, face, round(0.04 * t, 3), 0.95 if ok else 0.1, ok, *vals])))
    path.write_text("\n".join(lines) + "\n")


def test_openface_csvs_by_the_naming_rule(store, tmp_path):
    clips = _clips(store)  # clip/00000 ... clip/00005, media = the same key
    of = tmp_path / "processed"
    p0 = [[1, 0, 1, 0, 0], [1, 0, 1, 0, 1], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0]]
    _openface_csv(of / "clip" / "00000.csv", p0, second_face=2, success=[1, 1, 1, 0, 1])  # rule 1, 2 faces
    _openface_csv(of / "clip_00001.csv", [[1, 1, 1, 1, 1]] * 5)                          # rule 2
    _openface_csv(of / "videos" / "00002.csv", [[0, 0, 1, 0, 0]] * 4)                    # rule 3, 4 rows only
    _openface_csv(of / "00003.csv", [[0, 1]] * 5, aus=(1, 2))                             # rule 3, fewer AUs
    (of / "00003_of_details.txt").write_text("Input:clip/00003\n")
    _openface_csv(of / "clip" / "00005.csv", [[1, 1, 1, 1, 1]] * 5, success=[0] * 5)     # OpenFace found no face
    for sub in ("a", "b"):  # two CSVs named after clip 4's media: ambiguous, neither is used
        _openface_csv(of / sub / "00004.csv", [[1, 1, 1, 1, 1]] * 5)
    rep = label_store_from_openface(store, of)
    assert rep["clips_without_labels"] == [clips[4]] and rep["clips_labelled"] == 5 and rep["complete"]
    assert rep["frame_mismatch"] == [clips[2]] and rep["aus"] == (1, 2, 12, 28, 45)
    info = pseudo_label_info(store)
    assert info["source"] == "openface" and info["values"] == "presence" and info["without_examples"] == [clips[4]]
    got = read_au_pseudo(store, clips)
    want0 = np.array(p0, np.float32)
    want0[3] = np.nan  # success 0
    np.testing.assert_array_equal(got[clips[0]], want0)
    assert (got[clips[1]] == 1).all()
    assert (got[clips[2]][:4, 2] == 1).all() and np.isnan(got[clips[2]][4]).all()
    assert (got[clips[3]][:, 1] == 1).all() and np.isnan(got[clips[3]][:, 2:]).all()
    assert np.isnan(got[clips[4]]).all() and np.isnan(got[clips[5]]).all()
    aus = (1, 2, 6, 12, 45)
    mean, count = (_dataset(store, m, aus, T=5) for m in ("clip_mean", "clip_count"))
    for i in range(6):  # on presence (0/1) both rules of the released code agree
        assert torch.equal(mean[i]["au"], count[i]["au"])
    # the 4 known frames of face 0: AU1 2 of 4 → 1, AU2 1 → 0, AU12 3 → 1, AU45 1 → 0
    np.testing.assert_array_equal(mean[0]["au"][0].numpy(), [1, 0, -1, 1, 0])
    assert (mean[4]["au"] == -1).all() and (mean[0]["au"][:, 2] == -1).all()
    again = label_store_from_openface(store, of)  # resumable: only the clip without a CSV is looked at again
    assert again["clips_resumed"] == 5 and again["clips_labelled"] == 0


# ---------------------------------------------------------------------------------------- the AU-DFER loss
def test_au_dfer_loss_gets_a_nonzero_au_term(store):
    from aufer.training.losses import LossContext
    from aufer.methods.au_dfer.loss import AU_DFER_AUS, au_dfer_loss

    label_store_with_model(store, _model(), device="cpu")
    torch.manual_seed(0)
    out = {"au": torch.randn(4, 3, len(AU_DFER_AUS)), "expr": torch.randn(4, 7)}
    terms = {}
    for mode in ("none", "frames", "clip_mean", "clip_count"):
        st = FaceStore(store)
        ds = ExprClipDataset(st, st.load_records(), num_segments=3, aus=AU_DFER_AUS, au_labels=mode)
        batch = collate([ds[i] for i in range(4)])
        terms[mode] = float(au_dfer_loss(None, out, None, batch, ctx=LossContext())["loss_au_dfer"])
    assert terms["none"] == 0.0
    assert all(terms[m] > 0 for m in ("frames", "clip_mean", "clip_count")), terms


def test_recipe_key_reaches_the_expression_datasets(store):
    from aufer.engine import build as B
    from aufer.engine.recipe import RecipeError, from_dict

    label_store_with_model(store, _model(), device="cpu")
    rec = tiny_recipe(expr=store)
    assert from_dict(rec).data.expr.au_pseudo == "none"
    rec["data"]["expr"]["au_pseudo"] = "clip_mean"
    data = B.build_data(from_dict(rec), {"expr": "1"})
    assert data.expr.train.au_labels == "clip_mean"
    assert (data.expr.train[0]["au"] >= 0).any()
    rec["data"]["expr"]["au_pseudo"] = "mean"
    with pytest.raises(RecipeError, match="au_pseudo"):
        from_dict(rec)


# ------------------------------------------------------------------------------------------------ the CLI
from test_bad_inputs import one_line_error as _one_line_error  # noqa: E402  (the shared CLI error check)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_cli_labels_and_refuses_bad_input_with_one_line(store, tmp_path):
    def aufer(*args):
        return CliRunner().invoke(app, ["label-aus", *map(str, args)])

    m0, m1, none = tmp_path / "m0", tmp_path / "m1", tmp_path / "noau"
    save_model(_model(0), m0 / "model")
    save_model(_model(1), m1 / "best")  # a run folder of `aufer train` holds best.safetensors
    save_model(create_model("aufer_tiny_image", aus=[], input_size=32, width=4, dim=16), none / "model")
    r = aufer(store, "--model", m0, "--device", "cpu", "--batch-size", "8")
    assert r.exit_code == 0, r.stderr
    assert "AU pseudo-labels of 6/6 clips" in r.stdout and "this run labelled 6 clips (30 frames)" in r.stdout
    _one_line_error(aufer(store, "--model", m1, "--device", "cpu"), "--replace")
    r = aufer(store, "--model", m1, "--device", "cpu", "--replace")
    assert r.exit_code == 0, r.stderr
    assert pseudo_label_info(store)["path"] == str(m1 / "best.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    au = au_store(tmp_path / "au.sqlite", seqs=1, frames=4)
    (tmp_path / "notes.sqlite").write_text("not a database")
    _one_line_error(aufer(tmp_path / "nope.sqlite", "--model", m0), "no such store")
    _one_line_error(aufer(au, "--model", m0), "not expression clips")
    _one_line_error(aufer(tmp_path / "notes.sqlite", "--model", m0), "not an aufer face store")
    _one_line_error(aufer(store), "exactly one label source")
    _one_line_error(aufer(store, "--model", m0, "--openface", empty), "exactly one label source")
    _one_line_error(aufer(store, "--model", none, "--replace"), "has no AU outputs")
    _one_line_error(aufer(store, "--model", tmp_path / "missing"), "no checkpoint")
    _one_line_error(aufer(store, "--openface", empty, "--replace"), "no .csv files")
    _one_line_error(aufer(store, "--openface", tmp_path / "nowhere", "--replace"), "no such folder")
    (empty / "other.csv").write_text("frame, face_id, timestamp, confidence, success, AU01_c\n1, 0, 0, 1, 1, 1\n")
    _one_line_error(aufer(store, "--openface", empty, "--replace"), "none of its 1 CSVs")
    _one_line_error(aufer(store, "--model", m0, "--device", "tpu", "--replace"), "--device")
    assert pseudo_label_info(store)["path"] == str(m1 / "best.safetensors")  # the refused runs changed nothing
    assert not (tmp_path / "nope.sqlite").exists()
